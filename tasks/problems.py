"""Stage `problems`: shard the sources over Ray, validate them into the problems contract, commit the artifact."""

from __future__ import annotations

import collections
import logging
from pathlib import Path

import pyarrow as pa

from bard_core import contracts
from bard_core import problems as stage
from bard_core.config import BardConfig, ProblemsConfig
from storage.artifacts import Manifest, commit_shard, has_shard, read_shards, write_table
from tasks.build import StageRun, keyed_when_on
from tasks.ray_runtime import ensure_ray, plural, run_shards

PARTS, PARTS_REJECTED = "_parts/problems", "_parts/problems_rejected"
# Shards before `finalize`: problems still carry where they came from, to name a duplicate's first occurrence.
PART_SCHEMA = contracts.PROBLEMS.append(pa.field("_file", pa.string())).append(pa.field("_line", pa.int64()))
log = logging.getLogger("bard")


def key_config(config: BardConfig) -> dict:
    """What the key depends on: the stage's config and the bytes (or package versions) of its sources."""
    return {
        "problems": {**config.problems.model_dump(mode="json"), "sources": [
            s.model_dump(mode="json", exclude=keyed_when_on(s, "options")) for s in config.problems.sources]},
        "fingerprints": [stage.fingerprint(s) for s in config.problems.sources],
    }


def check(config: BardConfig) -> None:
    """Fail before any flow starts if a source cannot be read at all (a clear message, no traceback)."""
    stage.plan(config.problems)


def _build_shard(spec: stage.ShardSpec, config: ProblemsConfig, artifact_dir: str) -> None:
    problems, rejected = stage.build_shard(spec, config)
    commit_shard(artifact_dir, PARTS, spec.index, contracts.to_table(problems, PART_SCHEMA))
    # Committed second, so its presence means the whole shard is done.
    commit_shard(artifact_dir, PARTS_REJECTED, spec.index, contracts.to_table(rejected, contracts.PROBLEMS_REJECTED))


def run(job: StageRun) -> tuple[dict[str, int], dict]:
    """Shard the sources over Ray (resuming from the shards committed), then drop duplicates across shards."""
    config, path = job.config, job.path
    specs = stage.plan(config.problems)
    missing = [s for s in specs if not has_shard(path, PARTS_REJECTED, s.index)]
    if len(missing) < len(specs):
        log.info("problems: resuming, %d of %d shards already committed", len(specs) - len(missing), len(specs))
    nodes = 0  # Ray nodes that built this run's shards
    if missing:
        ensure_ray(config.ray)
        _, nodes = run_shards(_build_shard, missing, config.problems, str(path), label="problems",
                              resources=config.ray.for_stage("problems"))

    parts = zip(read_shards(path, PARTS, len(specs)), read_shards(path, PARTS_REJECTED, len(specs)))
    problems, rejected = stage.finalize([(p.to_pylist(), r.to_pylist()) for p, r in parts])
    shard_rows = config.problems.shard_rows
    tables = {
        "problems": write_table(path, "problems", contracts.to_table(problems, contracts.PROBLEMS), shard_rows),
        "problems_rejected": write_table(
            path, "problems_rejected", contracts.to_table(rejected, contracts.PROBLEMS_REJECTED), shard_rows
        ),
    }
    return tables, {**_stats(problems, rejected, shards=len(specs), resumed=len(specs) - len(missing)), "nodes": nodes}


def _stats(problems: list[dict], rejected: list[dict], shards: int, resumed: int) -> dict:
    kept = collections.Counter(p["source"] for p in problems)
    dropped = collections.Counter(r["source"] for r in rejected)
    reasons = collections.Counter(r["reason"].split(" (")[0] for r in rejected)
    return {
        "per_source": {s: {"problems": kept[s], "rejected": dropped[s]} for s in sorted(kept | dropped)},
        "reject_reasons": dict(reasons.most_common()),
        "shards": shards,
        "shards_resumed": resumed,
    }


def runs_on(config: BardConfig, inputs: dict[str, Path]) -> list[str]:
    asked = config.ray.for_stage("problems", num_cpus=1, num_gpus=0)
    return [f"Ray tasks of {plural(asked['num_cpus'], 'CPU')} and {plural(asked['num_gpus'], 'GPU')}, one per shard"]


def summary(manifest: Manifest) -> list[dict]:
    return [{"source": s, **counts} for s, counts in manifest.stats.get("per_source", {}).items()]
