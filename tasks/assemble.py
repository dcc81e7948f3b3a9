"""Stage `assemble`: the SFT mix and the RL prompts, streamed by DuckDB from the upstream
Parquet files to the artifact's, never held in memory.

Per-problem decisions (duplicates, contamination, split, shuffle order) come from `bard_core.assemble`
and reach DuckDB as a small `plan` table; samples are joined to it and copied out in one ordered pass.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from bard_core import assemble as stage
from bard_core.budget import Budget, tier_sql
from bard_core.compress import coverage
from bard_core.config import BardConfig
from bard_core.errors import BardError
from storage.artifacts import ArtifactStore, Manifest, shard_name, write_table
from tasks.build import StageRun

NAME = "assemble"
MESSAGES = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
RL_PROMPTS = pa.schema(
    [("uid", pa.string()), ("problem_uid", pa.string()), ("prompt", MESSAGES), ("answer", pa.string()),
     ("budget", pa.int64()), ("label", pa.string()), ("split", pa.string())]
)  # fmt: skip
DROPPED = pa.schema(
    [("problem_uid", pa.string()), ("source", pa.string()), ("reason", pa.string()), ("detail", pa.string())]
)


def key_config(config: BardConfig) -> dict:
    return {
        "assemble": config.assemble.model_dump(mode="json", exclude={"memory_limit"}),
        "budget": config.budget.model_dump(mode="json", include={"template", "separator", "think_open", "think_close"}),
        "budget_sampling": config.budget_sampling.model_dump(mode="json"),
    }


def run(job: StageRun) -> tuple[dict[str, int], dict]:
    """The SFT mix and the RL prompts from the compressions, the teacher chains and the problems they came from."""
    store = ArtifactStore(job.config.home)
    rewrites = job.inputs["compress"]
    samples = store.find(rewrites.inputs["teacher"])
    problems = store.find(samples.inputs["problems"])
    return _assemble(job.config, job.path, problems, samples, rewrites)


def _assemble(config: BardConfig, path: Path, problems: Manifest, samples: Manifest, rewrites: Manifest):
    cfg = config.assemble
    con = duckdb.connect()
    scratch = path / "_parts" / "duckdb"
    scratch.mkdir(parents=True, exist_ok=True)
    con.execute(f"set memory_limit='{cfg.memory_limit}'")
    con.execute(f"set temp_directory='{scratch}'")
    con.execute("set preserve_insertion_order=true")
    con.execute(f"create view teacher_samples as select * from read_parquet({samples.files('teacher_samples')!r})")
    con.execute(f"create view compressions as select * from read_parquet({rewrites.files('compressions')!r})")

    all_problems = pa.concat_tables(
        pq.read_table(f, columns=["uid", "source", "question", "answer", "choices", "split"])
        for f in problems.files("problems")
    ).to_pylist()
    eval_sets: dict[str, list[str]] = {}
    pool = []
    for p in all_problems:
        if p["split"] in cfg.eval_splits:
            eval_sets.setdefault(p["source"], []).append(p["question"])
        else:
            pool.append(p)

    dropped = stage.dedup(pool, cfg)
    dropped.update(stage.contamination(pool, eval_sets, cfg))  # contamination is the reason reported first
    kept = [p for p in pool if p["uid"] not in dropped]
    plan = pa.table(
        {
            "problem_uid": [p["uid"] for p in kept],
            "question": [p["question"] for p in kept],
            "split": [stage.assign_split(p["uid"], cfg) for p in kept],
            "order_key": pa.array([stage.order_key(p["uid"], cfg) for p in kept], pa.int64()),
        }
    )
    con.register("plan_arrow", plan)
    con.execute("create table plan as select * from plan_arrow")

    sft_shards, mix = _sft(con, config, path)
    rl_rows, unscorable = stage.rl_prompts(kept, plan, config, coverage(samples.files("teacher_samples"), config))
    source_of = {p["uid"]: p["source"] for p in pool}
    drops = [
        {"problem_uid": uid, "source": source_of[uid], "reason": reason, "detail": detail}
        for uid, (reason, detail) in sorted(dropped.items())
    ] + [{"problem_uid": uid, "source": source_of[uid], "reason": "unscorable_gold", "detail": ""} for uid in unscorable]
    tables = {
        "sft_dataset": sft_shards,
        "rl_prompts": write_table(path, "rl_prompts", pa.Table.from_pylist(rl_rows, schema=RL_PROMPTS), 1_000_000),
        "assemble_dropped": write_table(path, "assemble_dropped", pa.Table.from_pylist(drops, schema=DROPPED), 1_000_000),
    }
    stats_table, histogram = stage.stats(con, str(path / "sft_dataset" / "*.parquet"), tier_sql(config.budget_sampling))
    tables["assemble_stats"] = write_table(path, "assemble_stats", stats_table, 1_000_000)
    tables["assemble_histogram"] = write_table(path, "assemble_histogram", histogram, 1_000_000)
    decontamination = [
        {"benchmark": b, "eval_questions": len(qs),
         "removed": sum(1 for r, d in dropped.values() if r == "contaminated" and d == b)}
        for b, qs in sorted(eval_sets.items())
    ]  # fmt: skip
    con.close()
    stats = {
        "problems": {"pool": len(pool), "kept": len(kept), "eval": sum(len(q) for q in eval_sets.values())},
        "dropped": dict(sorted(Counter(reason for reason, _ in dropped.values()).items())) | ({"unscorable_gold": len(unscorable)} if unscorable else {}),
        "decontamination": decontamination,
        "mix": mix,
        "rl_prompts": len(rl_rows),
        "per_kind": stats_table.to_pylist(),
    }
    return tables, stats


def _sft(con: duckdb.DuckDBPyConnection, config: BardConfig, path: Path) -> tuple[int, dict]:
    """Write `sft_dataset`; return its shard count and the mix counts before and after the ratio.

    Memory stays bounded whatever the size: the choice of rows is made on keys alone; one streaming pass
    then copies the chosen rows, text included, into scratch files partitioned by output shard; each
    shard is then sorted on its own and committed."""
    cfg = config.assemble
    con.execute(
        f"""
        create temp table standard_keys as
        select s.uid, s.problem_uid
        from teacher_samples s join plan using (problem_uid)
        where s.correct and not s.truncated
        qualify row_number() over (partition by s.problem_uid order by hash({cfg.seed}, s.uid), s.uid)
                <= {cfg.standard_per_problem}
        """
    )
    con.execute(
        "create temp table budget_keys as "
        "select c.uid, c.problem_uid from compressions c join plan using (problem_uid) where c.accepted"
    )
    n_standard = con.execute("select count(*) from standard_keys").fetchone()[0]
    n_budget = con.execute("select count(*) from budget_keys").fetchone()[0]
    if n_budget == 0:  # SFT would learn no budget: stop here, saying why
        raise BardError(
            "assemble: no accepted compression among the training problems: SFT would have no budget-aware rows. "
            "See the compress stage's compress_stats (`bard query \"select * from compress_stats\"`) for the reject "
            "reasons; a stronger compressor, more attempts (compress.attempts) or compress.above_length: true (budgets "
            "at or above a chain's length keep it whole) give rows"
        )
    f = cfg.standard_fraction
    # Keep every row of the scarcer kind; take whole problems of the other, in seeded order, up to the ratio.
    trim, limit = None, None
    if n_budget and n_standard > f / (1 - f) * n_budget:
        trim, limit = "standard_keys", round(n_budget * f / (1 - f))
    elif f > 0 and n_standard and n_budget > (1 - f) / f * n_standard:
        trim, limit = "budget_keys", round(n_standard * (1 - f) / f)
    if trim:
        con.execute(
            f"""
            create temp table trimmed as
            with per_problem as (
                select problem_uid, count(*) as n, hash({cfg.seed} + 2, problem_uid) as h from {trim} group by 1),
            running as (select problem_uid, sum(n) over (order by h, problem_uid) as upto from per_problem)
            select t.* from {trim} t join running using (problem_uid) where running.upto <= {limit}
            """
        )
        con.execute(f"drop table {trim}")
        con.execute(f"alter table trimmed rename to {trim}")

    # Output shards hold whole problems, in (split, shuffle order): shard = rows before the problem // shard_rows.
    con.execute(
        f"""
        create temp table shard_of as
        with counts as (
            select problem_uid, count(*) as n from
                (select problem_uid from standard_keys union all select problem_uid from budget_keys) group by 1),
        running as (
            select c.problem_uid, sum(c.n) over (order by p.split, p.order_key, c.problem_uid) - c.n as before
            from counts c join plan p using (problem_uid))
        select problem_uid, (before // {cfg.shard_rows})::int as shard from running
        """
    )
    shards = max(1, con.execute("select coalesce(max(shard) + 1, 0) from shard_of").fetchone()[0])
    think = config.budget.think_open.replace("'", "''")
    scratch = path / "_parts" / "sft_rows"
    con.execute(
        f"""
        copy (
            with rows as (
                select c.uid, c.problem_uid, 'budget' as kind, c.budget, c.completion, c.thinking_tokens
                from compressions c semi join budget_keys k on c.uid = k.uid
                union all
                select s.uid, s.problem_uid, 'standard', null::bigint, s.completion, s.thinking_tokens
                from teacher_samples s semi join standard_keys k on s.uid = k.uid)
            select r.uid, r.problem_uid, r.kind, r.budget,
                   [{{'role': 'user', 'content': {Budget.from_config(config).sql("p.question", "r.budget")}}}] as prompt,
                   [{{'role': 'assistant', 'content': case when contains(r.completion, '{think}') then r.completion
                       else '{think}' || r.completion end}}] as completion,
                   r.thinking_tokens, p.split, p.order_key, s.shard
            from rows r join plan p using (problem_uid) join shard_of s using (problem_uid)
        ) to '{scratch}' (format parquet, partition_by (shard), overwrite_or_ignore)
        """
    )
    for shard in range(shards):
        out = path / shard_name("sft_dataset", shard)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        parts = scratch / f"shard={shard}"
        # Every shard below `shards` has rows, except the single empty one when nothing was chosen.
        source = f"read_parquet('{parts}/*.parquet')" if parts.exists() else f"({_EMPTY_SFT})"
        con.execute(
            f"""
            copy (select uid, problem_uid, kind, budget, prompt, completion, thinking_tokens, split from {source}
                  order by split, order_key, problem_uid, kind, budget nulls last, uid)
            to '{tmp}' (format parquet, compression zstd)
            """
        )
        os.replace(tmp, out)
    kept = dict(con.execute(
        f"select kind, count(*) from read_parquet('{path}/sft_dataset/*.parquet') group by 1").fetchall())  # fmt: skip
    return shards, {
        "standard_available": n_standard, "budget_available": n_budget,
        "standard": kept.get("standard", 0), "budget": kept.get("budget", 0),
        "standard_fraction": round(kept.get("standard", 0) / max(1, sum(kept.values())), 4),
    }  # fmt: skip


_EMPTY_SFT = (
    "select ''::varchar as uid, ''::varchar as problem_uid, ''::varchar as kind, null::bigint as budget, "
    "[{'role': '', 'content': ''}] as prompt, [{'role': '', 'content': ''}] as completion, "
    "0::bigint as thinking_tokens, ''::varchar as split, 0::bigint as order_key limit 0"
)


def runs_on(config: BardConfig, inputs: dict[str, Path]) -> list[str]:
    return [f"DuckDB in this process (memory limit {config.assemble.memory_limit}), no GPU"]


def summary(manifest: Manifest) -> list[dict]:
    return manifest.stats["per_kind"]
