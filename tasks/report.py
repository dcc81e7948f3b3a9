"""Prefect task of stage `report`: the evaluation report (Markdown + PNG plots) from the `eval` artifact's
stored rows, committed as an artifact and published as a Prefect markdown artifact. `bard report` renders
the same from any eval artifact into a folder of your choice."""

from __future__ import annotations

import datetime
from pathlib import Path

import duckdb
from prefect import task
from prefect.cache_policies import NONE

from bard_core.config import BardConfig
from bard_core.errors import BardError
from bard_core.report import write_report
from storage.artifacts import ArtifactStore, Manifest, artifact_key
from tasks import compress
from tasks import eval as evaluation
from tasks.build import build_artifact

NAME = "report"
# Part of every artifact key: bumped when what the stage writes changes (tests/tasks/test_stage_versions.py pins it).
VERSION = 2


def key_config(config: BardConfig) -> dict:
    return {}


def inputs(config: BardConfig) -> dict[str, str]:
    """The evaluation, and the compressions to audit when this config makes them."""
    found = {"eval": evaluation.key(config)}
    if config.compress.generation is not None:
        found["compress"] = compress.key(config)
    return found


def key(config: BardConfig) -> str:
    return artifact_key(NAME, VERSION, key_config(config), inputs(config))


def check(config: BardConfig) -> None:
    evaluation.check(config)


def render(source: Manifest, out: Path, compressions: Manifest | None = None, home: str | None = None) -> Path:
    """Write report.md and plots/ for the eval artifact `source` into `out`, with the audit of the
    `compressions` artifact if given; return the report's path."""

    def rows(table: str, columns: str = "*") -> list[dict]:
        return duckdb.sql(f"select {columns} from read_parquet({source.files(table)!r})").to_arrow_table().to_pylist()

    metrics = rows("eval_metrics")
    lengths = rows("eval_samples", "model, mode, benchmark, budget, thinking_tokens")
    header = {
        "eval artifact": f"{source.key} ({source.path})",
        "models": ", ".join(f"{name}: {path}" for name, path in source.stats["models"].items()),
        **({"variants": "; ".join(f"{name}: {what}" for name, what in source.stats["variants"].items())}
           if source.stats.get("variants") else {}),
        "problems": source.stats["problems"], "samples": source.stats["samples"],
        "generated": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }  # fmt: skip
    audit = audit_compressions(compressions, ArtifactStore(home)) if compressions else None
    return write_report(out, metrics, rows("eval_correlation"), lengths, header, audit)


def audit_compressions(manifest: Manifest, store: ArtifactStore) -> tuple[list[dict], list[dict]]:
    """The compression audit over a compress artifact, joined to the teacher chains and questions it used."""
    from bard_core.audit import audit

    teacher = store.find(manifest.inputs["teacher"])
    problems = store.find(teacher.inputs["problems"])
    rows = duckdb.sql(
        f"""
        select c.uid, c.budget, c.accepted, c.answer_preserved, c.thinking, c.answer_pred,
               t.thinking as original, p.question
        from read_parquet({manifest.files("compressions")!r}) c
        join read_parquet({teacher.files("teacher_samples")!r}) t on t.uid = c.sample_uid
        join read_parquet({problems.files("problems")!r}) p on p.uid = c.problem_uid
        where c.attempts > 0  -- chains kept whole (they fit their budget) were not rewritten
        order by c.uid
        """
    ).to_arrow_table().to_pylist()
    return audit(rows)


def build(config: BardConfig, refresh: bool = False, flow_run_id: str | None = None) -> Manifest:
    source = ArtifactStore(config.home).manifest("eval", evaluation.key(config))
    if source is None:
        raise BardError("report: the eval artifact of this config is not built yet: run `bard run --from eval`")

    compressions = None
    if "compress" in inputs(config):
        compressions = ArtifactStore(config.home).manifest("compress", compress.key(config))
        if compressions is None:
            raise BardError("report: the compress artifact of this config is not built yet: run `bard run --from compress`")

    def make(path: Path) -> tuple[dict[str, int], dict]:
        report = render(source, path, compressions, config.home)
        return {}, {"report": str(report), "plots": sorted(p.name for p in (path / "plots").glob("*.png"))}

    return build_artifact(config, NAME, VERSION, key(config), key_config(config), inputs(config), make, refresh, flow_run_id)


@task(name="report", cache_policy=NONE)
def report_task(config: BardConfig, refresh: bool = False) -> Manifest:
    from prefect.artifacts import create_markdown_artifact

    from prefect.runtime import flow_run

    manifest = build(config, refresh, flow_run_id=flow_run.id)
    create_markdown_artifact(
        key="bard-report", markdown=Path(manifest.stats["report"]).read_text(),
        description=f"BARD report {manifest.key}: {manifest.stats['report']} (plots beside it)",
    )  # fmt: skip
    return manifest
