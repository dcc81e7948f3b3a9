"""Prefect task of stage `problems`: shard the sources over Ray, commit the artifact, return its manifest."""

from __future__ import annotations

import collections
import functools
import logging
from pathlib import Path

import pyarrow as pa
from prefect import task
from prefect.cache_policies import NONE

from bard_core import contracts
from bard_core import problems as stage
from bard_core.config import BardConfig, ProblemsConfig
from storage.artifacts import Manifest, artifact_key, commit_shard, has_shard, read_shards, write_table
from tasks.build import build_artifact
from tasks.publish import publish_summary
from tasks.ray_runtime import ensure_ray, run_shards

NAME = "problems"
PARTS, PARTS_REJECTED = "_parts/problems", "_parts/problems_rejected"
# Shards before `finalize`: problems still carry where they came from, to name a duplicate's first occurrence.
PART_SCHEMA = contracts.PROBLEMS.append(pa.field("_file", pa.string())).append(pa.field("_line", pa.int64()))
log = logging.getLogger("bard")


def key_config(config: BardConfig) -> dict:
    """What the key depends on: the stage's config and the bytes (or package versions) of its sources."""
    return {
        "problems": config.problems.model_dump(mode="json"),
        "fingerprints": [stage.fingerprint(s) for s in config.problems.sources],
    }


def key(config: BardConfig) -> str:
    return artifact_key(NAME, stage.VERSION, key_config(config), inputs={})


def check(config: BardConfig) -> None:
    """Fail before any flow starts if a source cannot be read at all (a clear message, no traceback)."""
    stage.plan(config.problems)


def _build_shard(spec: stage.ShardSpec, config: ProblemsConfig, artifact_dir: str) -> None:
    problems, rejected = stage.build_shard(spec, config)
    commit_shard(artifact_dir, PARTS, spec.index, contracts.to_table(problems, PART_SCHEMA))
    # Committed second, so its presence means the whole shard is done.
    commit_shard(artifact_dir, PARTS_REJECTED, spec.index, contracts.to_table(rejected, contracts.PROBLEMS_REJECTED))


def build(config: BardConfig, refresh: bool = False, flow_run_id: str | None = None) -> Manifest:
    """Build (or reuse, or resume) the `problems` artifact."""
    return build_artifact(
        config, NAME, stage.VERSION, key(config), key_config(config), {}, functools.partial(_make, config), refresh,
        flow_run_id,
    )


def _make(config: BardConfig, path: Path) -> tuple[dict[str, int], dict]:
    specs = stage.plan(config.problems)
    missing = [s for s in specs if not has_shard(path, PARTS_REJECTED, s.index)]
    if len(missing) < len(specs):
        log.info("problems: resuming, %d of %d shards already committed", len(specs) - len(missing), len(specs))
    nodes = 0  # Ray nodes that built this run's shards
    if missing:
        ensure_ray(config.ray)
        _, nodes = run_shards(_build_shard, missing, config.problems, str(path), label=NAME,
                              resources=config.ray.for_stage(NAME))

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


@task(name="problems", cache_policy=NONE)
def problems_task(config: BardConfig, refresh: bool = False) -> Manifest:
    from prefect.runtime import flow_run

    manifest = build(config, refresh, flow_run_id=flow_run.id)
    publish_summary(manifest, [
        {"source": s, **counts} for s, counts in manifest.stats.get("per_source", {}).items()
    ])
    return manifest
