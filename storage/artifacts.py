"""The artifact store: one directory per stage output, content-addressed, committed shard by shard.

    <home>/artifacts/<stage>/<key>/
        config.json              the resolved stage config and input keys (written first)
        <table>/part-00000.parquet ...   numbered shards, each committed atomically (temp name + rename)
        manifest.json            written last: its presence means the artifact is complete

`key = sha256(stage, stage version, stage config, input keys)`: the same inputs give the same key,
so a finished stage is skipped, and a stage killed midway finds its committed shards and runs only
the missing ones. `<home>` is a local or shared (NFS-style) path that every Ray worker can reach.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel

from bard_core.errors import BardError
from bard_core.files import sha256_file

MANIFEST = "manifest.json"
CONFIG = "config.json"


def artifact_key(stage: str, version: int, config: dict, inputs: dict[str, str]) -> str:
    payload = json.dumps(
        {"stage": stage, "version": version, "config": config, "inputs": inputs}, sort_keys=True, default=str
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


class Shard(BaseModel):
    path: str  # relative to the artifact directory
    rows: int
    sha256: str


class Manifest(BaseModel):
    """What a Prefect task passes on and what the catalog indexes: small, never the data itself."""

    stage: str
    key: str
    version: int
    path: str
    inputs: dict[str, str]
    tables: dict[str, list[Shard]]
    content_hash: str  # over the shards' bytes: equal for a resumed and an uninterrupted run
    created_at: float
    flow_run_id: str | None = None
    stats: dict = {}

    def rows(self, table: str | None = None) -> int:
        tables = [table] if table else list(self.tables)
        return sum(s.rows for t in tables for s in self.tables[t])

    def files(self, table: str) -> list[str]:
        return [str(Path(self.path) / s.path) for s in self.tables[table]]


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def shard_name(table: str, index: int) -> str:
    return f"{table}/part-{index:05d}.parquet"


def commit_shard(artifact_dir: str | Path, table: str, index: int, data: pa.Table) -> None:
    """Write one shard under a temporary name and rename it into place: a shard exists whole or not at all.
    Called from Ray workers, so it takes a plain path and holds no state."""
    path = Path(artifact_dir) / shard_name(table, index)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    pq.write_table(data, tmp, compression="zstd")
    os.replace(tmp, path)


def has_shard(artifact_dir: str | Path, table: str, index: int) -> bool:
    return (Path(artifact_dir) / shard_name(table, index)).exists()


def read_shards(artifact_dir: str | Path, table: str, count: int) -> list[pa.Table]:
    return [pq.read_table(Path(artifact_dir) / shard_name(table, i)) for i in range(count)]


class ArtifactStore:
    def __init__(self, home: str | Path):
        self.home = Path(home).expanduser().resolve()
        self.root = self.home / "artifacts"

    def artifact_dir(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def manifest(self, stage: str, key: str) -> Manifest | None:
        """The finished artifact, or None if it was never completed."""
        path = self.artifact_dir(stage, key) / MANIFEST
        if not path.exists():
            return None
        return Manifest.model_validate_json(path.read_text())

    def find(self, key_prefix: str) -> Manifest:
        """A finished artifact by (a unique prefix of) its key, in any stage."""
        hits = sorted(self.root.glob(f"*/{key_prefix}*/{MANIFEST}")) if self.root.exists() else []
        if not hits:
            raise BardError(f"no finished artifact with key {key_prefix!r} under {self.root}")
        if len(hits) > 1:
            raise BardError(f"key prefix {key_prefix!r} is ambiguous: {', '.join(h.parent.name for h in hits)}")
        return Manifest.model_validate_json(hits[0].read_text())

    def list(self, stage: str | None = None) -> list[Manifest]:
        if not self.root.exists():
            return []
        pattern = f"{stage or '*'}/*/{MANIFEST}"
        manifests = [Manifest.model_validate_json(p.read_text()) for p in self.root.glob(pattern)]
        return sorted(manifests, key=lambda m: m.created_at)

    def begin(self, stage: str, key: str, config: dict, inputs: dict[str, str]) -> Path:
        """Create (or reopen, to resume) the artifact directory and record what it is built from."""
        path = self.artifact_dir(stage, key)
        path.mkdir(parents=True, exist_ok=True)
        record = {"stage": stage, "key": key, "config": config, "inputs": inputs}
        _atomic_write_bytes(path / CONFIG, json.dumps(record, indent=2, sort_keys=True, default=str).encode())
        return path

    def finish(
        self, stage: str, key: str, version: int, inputs: dict[str, str], tables: dict[str, int],
        stats: dict | None = None, flow_run_id: str | None = None,
    ) -> Manifest:
        """Hash the committed shards (`tables` maps each table to its shard count) and write the manifest, last."""
        path = self.artifact_dir(stage, key)
        shards: dict[str, list[Shard]] = {}
        content = hashlib.sha256()
        for table, count in sorted(tables.items()):
            shards[table] = []
            for i in range(count):
                rel = shard_name(table, i)
                file = path / rel
                if not file.exists():
                    raise BardError(f"{stage}: cannot finish artifact {key}: shard {rel} is missing")
                shard = Shard(path=rel, rows=pq.ParquetFile(file).metadata.num_rows, sha256=sha256_file(file))
                shards[table].append(shard)
                content.update(f"{rel}:{shard.sha256}\n".encode())
        manifest = Manifest(
            stage=stage, key=key, version=version, path=str(path), inputs=inputs, tables=shards,
            content_hash=content.hexdigest(), created_at=time.time(), flow_run_id=flow_run_id, stats=stats or {},
        )
        _atomic_write_bytes(path / MANIFEST, manifest.model_dump_json(indent=2).encode())
        return manifest


def write_table(artifact_dir: str | Path, table: str, data: pa.Table, shard_rows: int) -> int:
    """Commit `data` as shards of at most `shard_rows` rows; always at least one (an empty table keeps
    its schema, so views over it still work). Returns the shard count."""
    count = max(1, -(-data.num_rows // shard_rows))
    for i in range(count):
        commit_shard(artifact_dir, table, i, data.slice(i * shard_rows, shard_rows))
    return count
