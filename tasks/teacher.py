"""Stage `teacher`: sample the problems on engine actors, commit the samples with per-source statistics."""

from __future__ import annotations

import functools
from pathlib import Path


from bard_core import contracts, tokenizers
from bard_core import teacher as stage
from bard_core.config import BardConfig
from bard_core.errors import BardError
from bard_core.files import model_dir_fingerprint
from bard_core.model_import import check_local_model
from storage.artifacts import Manifest, shard_paths, write_table
from tasks.build import StageRun
from tasks.generate import engines_line, plan_slices, run_generation
from tasks.ray_runtime import ensure_ray

NAME = "teacher"
TABLE = "teacher_samples"


def key_config(config: BardConfig) -> dict:
    """The teacher's config, except how many engines run it, and what the rows depend on downstream:
    how budget tokens are counted and how answers are verified."""
    found = {
        "teacher": config.teacher.model_dump(mode="json", exclude={"workers"}),
        "budget": config.budget.keyed(),
        "verify": config.verify.model_dump(mode="json"),
        "tokenizer": tokenizers.fingerprint(config.budget.tokenizer),
    }
    if config.teacher.generation and (files := model_dir_fingerprint(config.teacher.generation.model)):
        found["model_files"] = files  # a local model directory: its weights replaced in place are not the cached ones
    return found


def check(config: BardConfig) -> None:
    if config.teacher.generation is None:
        raise BardError("teacher.generation is not set: name the teacher's engine (backend: hf, openai or vllm)")
    if config.teacher.generation.backend in ("hf", "vllm"):
        check_local_model("teacher.generation.model", config.teacher.generation.model)


def run(job: StageRun) -> tuple[dict[str, int], dict]:
    """Sample the problems on engine actors, resuming from the rows committed."""
    config, path, source = job.config, job.path, job.inputs["problems"]
    cfg = config.teacher
    slices = plan_slices(source.tables["problems"], source.path, cfg.shard_rows)
    ensure_ray(config.ray)
    work = functools.partial(stage.sample, config=config)
    counts = run_generation(
        NAME, cfg.generation, slices, work, contracts.TEACHER_SAMPLES, path, TABLE, cfg.commit_rows, cfg.workers,
        config.ray.for_stage(NAME), job.on_progress,
    )
    summary = stage.summary(shard_paths(path, TABLE, len(slices)))
    tables = {TABLE: len(slices), "teacher_stats": write_table(path, "teacher_stats", summary, 10_000)}
    return tables, {**counts, "per_source": summary.to_pylist()}


def runs_on(config: BardConfig, inputs: dict[str, Path]) -> list[str]:
    return [engines_line(config.teacher.generation, config.teacher.workers, config.ray.for_stage(NAME).get("num_gpus"))]


def summary(manifest: Manifest) -> list[dict]:
    return manifest.stats["per_source"]
