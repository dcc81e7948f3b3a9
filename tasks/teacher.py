"""Prefect task of stage `teacher`: sample the problems on engine actors, commit the artifact, return its manifest."""

from __future__ import annotations

import functools
from pathlib import Path

import duckdb
import pyarrow as pa
from prefect import task
from prefect.cache_policies import NONE

from bard_core import contracts, tokenizers
from bard_core import teacher as stage
from bard_core.config import BardConfig
from bard_core.errors import BardError
from bard_core.files import model_dir_fingerprint
from storage.artifacts import ArtifactStore, Manifest, artifact_key, write_table
from tasks import problems
from tasks.build import build_artifact
from tasks.generate import plan_slices, run_generation
from tasks.publish import progress_reporter, publish_summary
from tasks.ray_runtime import ensure_ray

NAME = "teacher"
TABLE = "teacher_samples"


def key_config(config: BardConfig) -> dict:
    """The teacher's config, except how many engines run it, and what the rows depend on downstream:
    how budget tokens are counted and how answers are verified."""
    found = {
        "teacher": config.teacher.model_dump(mode="json", exclude={"workers"}),
        "budget": config.budget.model_dump(mode="json"),
        "verify": config.verify.model_dump(mode="json"),
        "tokenizer": tokenizers.fingerprint(config.budget.tokenizer),
    }
    if config.teacher.generation and (files := model_dir_fingerprint(config.teacher.generation.model)):
        found["model_files"] = files  # a local model directory: its weights replaced in place are not the cached ones
    return found


def inputs(config: BardConfig) -> dict[str, str]:
    return {"problems": problems.key(config)}


def key(config: BardConfig) -> str:
    return artifact_key(NAME, stage.VERSION, key_config(config), inputs(config))


def check(config: BardConfig) -> None:
    if config.teacher.generation is None:
        raise BardError("teacher.generation is not set: name the teacher's engine (backend: hf, openai or vllm)")


def build(config: BardConfig, refresh: bool = False, flow_run_id: str | None = None, on_progress=None) -> Manifest:
    """Build (or reuse, or resume) the `teacher` artifact from the finished `problems` artifact."""
    check(config)
    source = ArtifactStore(config.home).manifest("problems", problems.key(config))
    if source is None:
        raise BardError("teacher: the problems artifact of this config is not built yet: run `bard run --stages problems,teacher`")

    def make(path: Path) -> tuple[dict[str, int], dict]:
        cfg = config.teacher
        slices = plan_slices(source.tables["problems"], source.path, cfg.shard_rows)
        ensure_ray(config.ray)
        work = functools.partial(stage.sample, config=config)
        counts = run_generation(
            NAME, cfg.generation, slices, work, contracts.TEACHER_SAMPLES, path, TABLE, cfg.commit_rows, cfg.workers,
            config.ray.for_stage(NAME), on_progress,
        )
        summary = _summary([str(path / TABLE / f"part-{i:05d}.parquet") for i in range(len(slices))])
        tables = {TABLE: len(slices), "teacher_stats": write_table(path, "teacher_stats", summary, 10_000)}
        return tables, {**counts, "per_source": summary.to_pylist()}

    return build_artifact(
        config, NAME, stage.VERSION, key(config), key_config(config), inputs(config), make, refresh, flow_run_id
    )


def _summary(files: list[str]) -> pa.Table:
    """Per source and overall: samples, accuracy (over scorable samples), thinking-length percentiles,
    finish reasons and truncation."""
    return duckdb.sql(
        f"""
        select coalesce(source, 'all') as source,
               count(*) as samples,
               count(distinct problem_uid) as problems,
               round(avg(case when correct then 1.0 when not correct then 0.0 end), 4) as accuracy,
               count(*) filter (where correct is null) as unscorable,
               count(*) filter (where truncated) as truncated,
               count(*) filter (where finish_reason = 'stop') as finish_stop,
               count(*) filter (where finish_reason = 'length') as finish_length,
               count(*) filter (where finish_reason not in ('stop', 'length')) as finish_other,
               quantile_disc(thinking_tokens, 0.1) as thinking_p10,
               quantile_disc(thinking_tokens, 0.5) as thinking_p50,
               quantile_disc(thinking_tokens, 0.9) as thinking_p90,
               max(thinking_tokens) as thinking_max
        from read_parquet({files!r})
        group by rollup (source)
        order by grouping(source), source
        """
    ).to_arrow_table()


@task(name="teacher", cache_policy=NONE)
def teacher_task(config: BardConfig, refresh: bool = False) -> Manifest:
    from prefect.runtime import flow_run

    manifest = build(config, refresh, flow_run_id=flow_run.id, on_progress=progress_reporter(NAME))
    publish_summary(manifest, manifest.stats["per_source"])
    return manifest
