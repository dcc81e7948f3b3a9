"""Checkpoints that a killed training run resumes from."""

from __future__ import annotations

import json
from pathlib import Path


def last_complete_checkpoint(checkpoints: Path) -> str | None:
    """The newest checkpoint that was written to the end: a kill during a save leaves a directory without
    a whole `trainer_state.json` (the trainer writes it last), which is removed rather than resumed from."""
    import shutil

    if not checkpoints.is_dir():
        return None
    found = sorted(
        (d for d in checkpoints.glob("checkpoint-*") if d.name.split("-")[-1].isdigit()),
        key=lambda d: int(d.name.split("-")[-1]),
        reverse=True,
    )
    for d in found:
        try:
            json.loads((d / "trainer_state.json").read_text())
            return str(d)
        except (OSError, ValueError):  # missing, or cut off mid-write
            shutil.rmtree(d, ignore_errors=True)
    return None


def progress_file(out: Path) -> Path:
    """Where a training run says how far it is: {"step", "max_steps"}, rewritten at every step."""
    return Path(out) / "_parts" / "progress.json"


def read_progress(out: Path) -> tuple[int, int] | None:
    try:
        data = json.loads(progress_file(out).read_text())
        return int(data["step"]), int(data["max_steps"])
    except (OSError, ValueError, KeyError):  # not started yet
        return None


def progress_callback(out: Path):
    """A transformers TrainerCallback that keeps `progress_file(out)` current (the driver reads it for its progress
    bar and the Prefect progress artifact: the trainer runs in a Ray worker, maybe on another node)."""
    import os

    from transformers import TrainerCallback

    path = progress_file(out)

    class ProgressFile(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"step": state.global_step, "max_steps": state.max_steps}))
            os.replace(tmp, path)  # a reader never sees half a file

    return ProgressFile()
