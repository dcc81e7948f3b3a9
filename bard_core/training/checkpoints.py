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
