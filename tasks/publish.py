"""Prefect artifacts that every stage publishes: a table of counts beside the artifact's key and path."""

from __future__ import annotations

from prefect.artifacts import create_table_artifact

from storage.artifacts import Manifest


def publish_summary(manifest: Manifest, rows: list[dict]) -> None:
    create_table_artifact(
        key=f"{manifest.stage}-summary".replace("_", "-"),
        table=rows,
        description=f"`{manifest.stage}` artifact {manifest.key}: {manifest.path}",
    )


def progress_reporter(stage: str, interval_s: float = 5.0):
    """A callback `(done, total)` that keeps one Prefect progress artifact up to date (at most every
    `interval_s` seconds, and at the end: each update is an API call)."""
    import time

    from prefect.artifacts import create_progress_artifact, update_progress_artifact

    state = {"id": None, "sent_at": 0.0}

    def report(done: int, total: int) -> None:
        percent = 100.0 * done / max(total, 1)
        now = time.monotonic()
        if state["id"] is None:
            state["id"] = create_progress_artifact(percent, key=f"{stage}-progress", description=f"`{stage}` chunks done")
        elif now - state["sent_at"] >= interval_s or done == total:
            update_progress_artifact(state["id"], percent)
        else:
            return
        state["sent_at"] = now  # the time of the last update sent, not of the last call

    return report
