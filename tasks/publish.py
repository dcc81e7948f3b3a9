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


def publish_stages(manifests: dict[str, Manifest], reused: list[str]) -> None:
    """One table per pipeline run: each stage, whether it was built or its finished artifact reused, and where."""
    rows = [{"stage": label, "status": "reused" if label in reused else "built", "key": m.key, "rows": m.rows(),
             "path": m.path} for label, m in manifests.items()]  # fmt: skip
    built = [label for label in manifests if label not in reused]
    said = "; ".join(f"{what}: {', '.join(labels)}" for what, labels in (("built", built), ("reused", reused)) if labels)
    if rows:
        create_table_artifact(key="bard-stages", table=rows, description=f"The stages of this run. {said}")


def publish_report(manifest: Manifest) -> None:
    from pathlib import Path

    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(
        key="bard-report", markdown=Path(manifest.stats["report"]).read_text(),
        description=f"BARD report {manifest.key}: {manifest.stats['report']} (plots beside it)",
    )  # fmt: skip
