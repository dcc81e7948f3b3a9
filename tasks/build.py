"""What every stage's build does around its own work: reuse the finished artifact, or build it once under
the artifact's lock, write the manifest last and drop the scratch parts."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bard_core.config import BardConfig
from storage.artifacts import ArtifactStore, Manifest
from storage.lock import artifact_lock
from tasks.ray_runtime import send_worker_output_to

if TYPE_CHECKING:
    from tasks.graph import Step

log = logging.getLogger("bard")


def keyed_when_on(settings: Any, *names: str) -> set[str]:
    """Of the fields `names` of `settings`, those that are off (unset, false or empty): left out of a stage's key, so
    that a setting added later keeps the keys of the profiles that do not use it."""
    return {name for name in names if not getattr(settings, name)}


@dataclass(frozen=True)
class StageRun:
    """What a stage's runner is handed: its config, its finished inputs (as named in its key) and where it writes."""

    config: BardConfig
    inputs: dict[str, Manifest]
    path: Path  # the artifact directory; `path/_parts` holds what an interrupted run committed
    on_progress: Callable[[int, int], None] | None = None


def build_artifact(
    step: Step, make: Callable[[Path], tuple[dict[str, int], dict]], refresh: bool = False, flow_run_id: str | None = None
) -> Manifest:
    """`make(path)` commits the stage's tables under `path` (resuming from what `path/_parts` already
    holds) and returns (shard count per table, statistics)."""
    store = ArtifactStore(step.config.home)
    stage, key, inputs = step.name, step.key, {label: s.key for label, s in step.inputs.items()}
    with artifact_lock(store.home, stage, key, step.config.lock_timeout_s):
        if refresh:
            shutil.rmtree(store.artifact_dir(stage, key), ignore_errors=True)
        status = store.status(stage, key)
        if status.damage:  # never reused, never silently built over: --refresh rebuilds it
            raise status.error()
        manifest = status.manifest
        if manifest:
            log.info("%s: cached artifact %s (%d rows)", step.label, key, manifest.rows())
        else:
            path = store.begin(stage, key, step.key_config, inputs)
            # what the Ray workers print (library progress bars, warnings) goes here, not to the terminal
            output = store.home / "logs" / f"{stage}-{key}.log"
            send_worker_output_to(output)
            log.info("%s: running (library output: %s)", step.label, output)
            started = time.perf_counter()
            try:
                tables, stats = make(path)
            except BaseException:
                log.info("%s: stopped after %.1f s; library output: %s", step.label, time.perf_counter() - started, output)
                raise
            manifest = store.finish(stage, key, step.stage.version, inputs, tables, stats, flow_run_id)
            shutil.rmtree(path / "_parts", ignore_errors=True)
            log.info("%s: %d rows in %.1f s -> %s", step.label, manifest.rows(), time.perf_counter() - started, path)
    return manifest
