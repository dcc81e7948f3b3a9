"""Stage `compress`: rewrite the verified teacher chains to budget tiers on engine actors, commit the
rewrites with per-tier statistics."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from bard_core import contracts
from bard_core import compress as stage
from bard_core.config import BardConfig
from bard_core.errors import BardError
from bard_core.files import model_dir_fingerprint
from bard_core.model_import import check_local_model
from storage.artifacts import ArtifactStore, Manifest, shard_paths, write_table
from tasks.build import StageRun
from tasks.generate import engines_line, plan_slices, run_generation
from tasks.ray_runtime import ensure_ray

NAME = "compress"
TABLE = "compressions"
log = logging.getLogger("bard")


def key_config(config: BardConfig) -> dict:
    found = {
        "compress": config.compress.model_dump(mode="json", exclude={"workers"}),
        "budget_sampling": config.budget_sampling.model_dump(mode="json"),
        "budget": config.budget.keyed(),
        "verify": config.verify.model_dump(mode="json"),
    }
    if config.compress.generation and (files := model_dir_fingerprint(config.compress.generation.model)):
        found["model_files"] = files  # a local model directory: its weights replaced in place are not the cached ones
    return found


def check(config: BardConfig) -> None:
    if config.compress.generation is None:
        raise BardError("compress.generation is not set: name the compressor's engine (backend: hf, openai or vllm)")
    if config.compress.generation.backend in ("hf", "vllm"):
        check_local_model("compress.generation.model", config.compress.generation.model)


def run(job: StageRun) -> tuple[dict[str, int], dict]:
    """Rewrite the teacher's chains on engine actors, resuming from the rows committed."""
    config, path, samples = job.config, job.path, job.inputs["teacher"]
    problems = ArtifactStore(config.home).find(samples.inputs["problems"])
    cfg = config.compress
    notes = [warning] if (warning := stage.thinking_warning(config)) else []
    for note in notes:
        log.warning(note)
    stage.check_has_chains(samples.files("teacher_samples"), config)
    slices = plan_slices(samples.tables["teacher_samples"], samples.path, cfg.shard_rows)
    work = functools.partial(
        _compress, problem_files=tuple(problems.files("problems")), config=config,
        coverage=stage.coverage(samples.files("teacher_samples"), config),
    )  # fmt: skip
    ensure_ray(config.ray)
    counts = run_generation(
        NAME, cfg.generation, slices, work, contracts.COMPRESSIONS, path, TABLE, cfg.commit_rows, cfg.workers,
        config.ray.for_stage(NAME), job.on_progress,
    )
    summary = stage.summary(shard_paths(path, TABLE, len(slices)), config)
    tables = {TABLE: len(slices), "compress_stats": write_table(path, "compress_stats", summary, 10_000)}
    counted = {"prompt_tokenizer": stage.prompt_tokenizer(config)} if cfg.max_input_tokens is not None else {}
    return tables, {**counts, "per_tier": summary.to_pylist(), **counted, **({"notes": notes} if notes else {})}


@functools.lru_cache(maxsize=2)
def _problems(files: tuple[str, ...]) -> dict[str, dict]:
    """The problems an actor needs to build prompts and verify answers, read once per actor process."""
    table = pa.concat_tables(pq.read_table(f, columns=["uid", "question", "answer", "choices"]) for f in files)
    return {row["uid"]: row for row in table.to_pylist()}


def _compress(rows: list[dict], backend, problem_files: tuple[str, ...], config: BardConfig, coverage) -> list[dict]:
    return stage.compress(rows, _problems(problem_files), backend, config, coverage)


def runs_on(config: BardConfig, inputs: dict[str, Path]) -> list[str]:
    return [engines_line(config.compress.generation, config.compress.workers, config.ray.for_stage(NAME).get("num_gpus"))]


def summary(manifest: Manifest) -> list[dict]:
    return manifest.stats["per_tier"]
