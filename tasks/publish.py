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
