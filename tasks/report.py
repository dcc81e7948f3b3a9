"""Stage `report`: the evaluation report (Markdown + PNG plots) from the `eval` artifact's stored rows,
committed as an artifact (the pipeline flow publishes it as a Prefect markdown artifact). `bard report` renders
the same from any eval artifact into a folder of your choice."""

from __future__ import annotations

import datetime
from pathlib import Path

import duckdb

from bard_core.budget import tier_sql
from bard_core.config import BardConfig
from bard_core.report import write_report
from storage.artifacts import ArtifactStore, Manifest
from tasks.build import StageRun



def key_config(config: BardConfig) -> dict:
    return {}


def inputs(config: BardConfig) -> dict[str, str]:
    """The evaluation, and the compressions to audit when this config makes them."""
    return {"eval": "eval", **({"compress": "compress"} if config.compress.generation is not None else {})}


def render(source: Manifest, out: Path, compressions: Manifest | None = None, config: BardConfig | None = None) -> Path:
    """Write report.md and plots/ for the eval artifact `source` into `out`, with the audit of the
    `compressions` artifact (made with `config`) if given; return the report's path."""

    def rows(table: str, columns: str = "*") -> list[dict]:
        return duckdb.sql(f"select {columns} from read_parquet({source.files(table)!r})").to_arrow_table().to_pylist()

    metrics = rows("eval_metrics")
    lengths = rows("eval_samples", "model, mode, benchmark, budget, thinking_tokens, problem_uid, correct")
    header = {
        "eval artifact": f"{source.key} ({source.path})",
        "models": ", ".join(f"{name}: {path}" for name, path in source.stats["models"].items()),
        **({"variants": "; ".join(f"{name}: {what}" for name, what in source.stats["variants"].items())}
           if source.stats.get("variants") else {}),
        **({"tokenizer mismatch allowed": config.budget.tokenizer_mismatch_reason}
           if config and config.budget.tokenizer_mismatch_reason else {}),
        "problems": source.stats["problems"], "samples": source.stats["samples"],
        "generated": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }  # fmt: skip
    audit = audit_compressions(compressions, config) if compressions else None
    return write_report(out, metrics, rows("eval_correlation"), lengths, header, audit)


def audit_compressions(manifest: Manifest, config: BardConfig) -> tuple[list[dict], list[dict]]:
    """The compression audit over a compress artifact (made with `config`), joined to the teacher chains and
    questions it used, per budget tier as in `compress_stats`."""
    from bard_core.audit import audit

    store = ArtifactStore(config.home)
    teacher = store.find(manifest.inputs["teacher"])
    problems = store.find(teacher.inputs["problems"])
    rows = duckdb.sql(
        f"""
        select c.uid, c.budget, {tier_sql(config.budget_sampling)} as tier, c.accepted, c.reject_reason,
               c.answer_preserved, c.thinking, c.answer_pred, t.thinking as original, p.question
        from read_parquet({manifest.files("compressions")!r}) c
        join read_parquet({teacher.files("teacher_samples")!r}) t on t.uid = c.sample_uid
        join read_parquet({problems.files("problems")!r}) p on p.uid = c.problem_uid
        -- chains kept whole (they fit their budget) were not rewritten; too_long ones are counted, never sent
        where c.attempts > 0 or c.reject_reason = 'too_long'
        order by c.uid
        """
    ).to_arrow_table().to_pylist()
    return audit(rows)


def run(job: StageRun) -> tuple[dict[str, int], dict]:
    report = render(job.inputs["eval"], job.path, job.inputs.get("compress"), job.config)
    return {}, {"report": str(report), "plots": sorted(p.name for p in (job.path / "plots").glob("*.png"))}


def summary(manifest: Manifest) -> list[dict]:
    return [{"report": manifest.stats["report"], "plots": len(manifest.stats["plots"])}]
