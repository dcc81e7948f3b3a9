"""What every stage's build does around its own work: reuse the finished artifact, or build it once under
the artifact's lock, write the manifest last, drop the scratch parts, and index it in the catalog."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path

from bard_core.config import BardConfig
from storage import catalog
from storage.artifacts import ArtifactStore, Manifest
from storage.lock import artifact_lock

log = logging.getLogger("bard")


def build_artifact(
    config: BardConfig,
    stage: str,
    version: int,
    key: str,
    key_config: dict,
    inputs: dict[str, str],
    make: Callable[[Path], tuple[dict[str, int], dict]],
    refresh: bool = False,
    flow_run_id: str | None = None,
) -> Manifest:
    """`make(path)` commits the stage's tables under `path` (resuming from what `path/_parts` already
    holds) and returns (shard count per table, statistics)."""
    store = ArtifactStore(config.home)
    with artifact_lock(store.home, stage, key, config.lock_timeout_s):
        if refresh:
            shutil.rmtree(store.artifact_dir(stage, key), ignore_errors=True)
        status = store.status(stage, key)
        if status.damage:  # never reused, never silently built over: --refresh rebuilds it
            raise status.error()
        manifest = status.manifest
        if manifest:
            log.info("%s: cached artifact %s (%d rows)", stage, key, manifest.rows())
        else:
            path = store.begin(stage, key, key_config, inputs)
            tables, stats = make(path)
            manifest = store.finish(stage, key, version, inputs, tables, stats, flow_run_id)
            shutil.rmtree(path / "_parts", ignore_errors=True)
            log.info("%s: %d rows -> %s", stage, manifest.rows(), path)
        catalog.register(store.home, manifest)
    return manifest
