"""Prefect task of stage `compress`: rewrite the verified teacher chains to budget tiers on engine actors,
commit the artifact with per-tier statistics, return its manifest."""

from __future__ import annotations

import functools
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from prefect import task
from prefect.cache_policies import NONE

from bard_core import budget, contracts
from bard_core import compress as stage
from bard_core.config import BardConfig
from bard_core.errors import BardError
from bard_core.files import model_dir_fingerprint
from storage.artifacts import ArtifactStore, Manifest, artifact_key, write_table
from tasks import teacher
from tasks.build import build_artifact
from tasks.generate import plan_slices, run_generation
from tasks.publish import progress_reporter, publish_summary
from tasks.ray_runtime import ensure_ray

NAME = "compress"
TABLE = "compressions"


def key_config(config: BardConfig) -> dict:
    found = {
        "compress": config.compress.model_dump(mode="json", exclude={"workers"}),
        "budget_sampling": config.budget_sampling.model_dump(mode="json"),
        "budget": config.budget.model_dump(mode="json"),
        "verify": config.verify.model_dump(mode="json"),
    }
    if config.compress.generation and (files := model_dir_fingerprint(config.compress.generation.model)):
        found["model_files"] = files  # a local model directory: its weights replaced in place are not the cached ones
    return found


def inputs(config: BardConfig) -> dict[str, str]:
    return {"teacher": teacher.key(config)}


def key(config: BardConfig) -> str:
    return artifact_key(NAME, stage.VERSION, key_config(config), inputs(config))


def check(config: BardConfig) -> None:
    if config.compress.generation is None:
        raise BardError("compress.generation is not set: name the compressor's engine (backend: hf, openai or vllm)")


def build(config: BardConfig, refresh: bool = False, flow_run_id: str | None = None, on_progress=None) -> Manifest:
    """Build (or reuse, or resume) the `compress` artifact from the finished `teacher` artifact."""
    check(config)
    store = ArtifactStore(config.home)
    samples = store.manifest("teacher", teacher.key(config))
    if samples is None:
        raise BardError("compress: the teacher artifact of this config is not built yet: run `bard run --from teacher`")
    problems = store.manifest("problems", samples.inputs["problems"])

    def make(path: Path) -> tuple[dict[str, int], dict]:
        cfg = config.compress
        slices = plan_slices(samples.tables["teacher_samples"], samples.path, cfg.shard_rows)
        work = functools.partial(
            _compress, problem_files=tuple(problems.files("problems")), config=config,
            coverage=_coverage(samples.files("teacher_samples"), config),
        )  # fmt: skip
        ensure_ray(config.ray)
        counts = run_generation(
            NAME, cfg.generation, slices, work, contracts.COMPRESSIONS, path, TABLE, cfg.commit_rows, cfg.workers,
            config.ray.for_stage(NAME), on_progress,
        )
        summary = _summary([str(path / TABLE / f"part-{i:05d}.parquet") for i in range(len(slices))], config)
        tables = {TABLE: len(slices), "compress_stats": write_table(path, "compress_stats", summary, 10_000)}
        return tables, {**counts, "per_tier": summary.to_pylist()}

    return build_artifact(
        config, NAME, stage.VERSION, key(config), key_config(config), inputs(config), make, refresh, flow_run_id
    )


def _coverage(files: list[str], config: BardConfig) -> list[float] | None:
    """For `budget_sampling.mode: flat`, the share of eligible chains long enough for each budget bin,
    over the whole teacher artifact (the same on every actor)."""
    if config.budget_sampling.mode != "flat":
        return None
    cfg = config.compress
    correct = "and correct" if cfg.only_correct else ""
    lengths = duckdb.sql(
        f"select thinking_tokens from read_parquet({files!r}) "
        f"where not truncated {correct} and thinking_tokens >= {cfg.min_thinking_tokens}"
    ).fetchall()
    return budget.length_coverage([n for (n,) in lengths], config.budget_sampling)


@functools.lru_cache(maxsize=2)
def _problems(files: tuple[str, ...]) -> dict[str, dict]:
    """The problems an actor needs to build prompts and verify answers, read once per actor process."""
    table = pa.concat_tables(pq.read_table(f, columns=["uid", "question", "answer", "choices"]) for f in files)
    return {row["uid"]: row for row in table.to_pylist()}


def _compress(rows: list[dict], backend, problem_files: tuple[str, ...], config: BardConfig, coverage) -> list[dict]:
    return stage.compress(rows, _problems(problem_files), backend, config, coverage)


def _summary(files: list[str], config: BardConfig) -> pa.Table:
    """Per budget tier and overall: rewrites, acceptance rate, reject reasons, chains kept whole (they fit the
    budget as they are: `compress.above_length`), and the length error
    (L - B) / B of accepted rewrites. Tiers are the configured tiers, or the log-spaced bins."""
    tier = tier_sql(config)
    return duckdb.sql(
        f"""
        with r as (select *, {tier} as tier, (thinking_tokens - budget) / budget as rel_error
                   from read_parquet({files!r}))
        select coalesce(tier, 'all') as tier,
               count(*) as rewrites,
               count(distinct sample_uid) as chains,
               round(avg(accepted::int), 4) as acceptance,
               count(*) filter (where reject_reason = 'over_budget') as over_budget,
               count(*) filter (where reject_reason = 'answer_changed') as answer_changed,
               count(*) filter (where reject_reason = 'format') as format,
               count(*) filter (where attempts > 1) as retried,
               count(*) filter (where attempts = 0) as kept_whole,
               round(quantile_cont(rel_error, 0.1) filter (where accepted), 4) as rel_error_p10,
               round(quantile_cont(rel_error, 0.5) filter (where accepted), 4) as rel_error_p50,
               round(quantile_cont(rel_error, 0.9) filter (where accepted), 4) as rel_error_p90,
               round(avg(thinking_tokens / teacher_thinking_tokens) filter (where accepted), 4) as kept_ratio
        from r
        group by rollup (tier)
        order by grouping(tier), min(budget)
        """
    ).to_arrow_table()


def tier_sql(config: BardConfig) -> str:
    """SQL naming the tier of a `budget` column: the budget itself in mode `tiers`, else its log-spaced bin."""
    if config.budget_sampling.mode == "tiers":
        return "cast(budget as varchar)"
    edges = [round(e) for e in budget.budget_bins(config.budget_sampling)]
    cases = " ".join(f"when budget < {hi} then '{lo}-{hi}'" for lo, hi in zip(edges[:-1], edges[1:]))
    return f"case {cases} else '>= {edges[-1]}' end"


@task(name="compress", cache_policy=NONE)
def compress_task(config: BardConfig, refresh: bool = False) -> Manifest:
    from prefect.runtime import flow_run

    manifest = build(config, refresh, flow_run_id=flow_run.id, on_progress=progress_reporter(NAME))
    publish_summary(manifest, manifest.stats["per_tier"])
    return manifest
