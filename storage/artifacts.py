"""The artifact store: one directory per stage output, content-addressed, committed shard by shard.

    <home>/artifacts/<stage>/<key>/
        config.json              the resolved stage config and input keys (written first)
        <table>/part-00000.parquet ...   numbered shards, each committed atomically (temp name + rename)
        manifest.json            written last: its presence means the artifact is complete

`key = sha256(stage, stage version, stage config, input keys)`: the same inputs give the same key,
so a finished stage is skipped, and a stage killed midway finds its committed shards and runs only
the missing ones. `<home>` is a local or shared (NFS-style) path that every Ray worker can reach.

A finished artifact is checked, not trusted: `ArtifactStore.status` is the one place that says whether it is
missing (never finished), damaged (unreadable manifest, a shard missing or of another size) or intact, and
`ArtifactStore.verify` also re-hashes and re-counts every shard.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ValidationError

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
    size: int | None = None  # bytes; None in manifests written before sizes were recorded (checked by existence)


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


@dataclass(frozen=True)
class Status:
    """What an artifact directory holds: missing (no manifest: never finished), damaged, or intact."""

    stage: str
    key: str
    path: Path
    manifest: Manifest | None = None  # None when missing, or when the manifest itself is unreadable
    damage: str | None = None  # why it must not be reused, naming the file

    @property
    def intact(self) -> bool:
        return self.manifest is not None and self.damage is None

    def error(self) -> BardError:
        return BardError(f"{self.stage} artifact {self.key} ({self.path}) is damaged: {self.damage}; "
                         f"rerun with --refresh {self.stage} to rebuild it")  # fmt: skip


def _read_manifest(path: Path) -> tuple[Manifest | None, str | None]:
    """The manifest at `path`, re-pointed at the directory it lies in (so a moved or copied home still works),
    or why it cannot be read."""
    try:
        manifest = Manifest.model_validate_json(path.read_bytes())
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        what = "empty" if not path.stat().st_size else "truncated or not a manifest"
        return None, f"{path.name} is unreadable ({what}): {where + ': ' if where else ''}{first['msg']}"
    except OSError as err:
        return None, f"{path.name} is unreadable: {err.strerror}"
    return manifest.model_copy(update={"path": str(path.parent)}), None


def check_shards(manifest: Manifest) -> str | None:
    """The cheap check, done before every reuse: every listed shard exists with its recorded size."""
    for shards in manifest.tables.values():
        for shard in shards:
            file = Path(manifest.path) / shard.path
            try:
                size = file.stat().st_size
            except FileNotFoundError:
                return f"shard {shard.path} is missing"
            if shard.size is not None and size != shard.size:
                return f"shard {shard.path} is {size} bytes, the manifest records {shard.size}"
    return None


def verify_shards(manifest: Manifest) -> str | None:
    """The full check (`bard artifacts verify`): every shard's sha256 and row count are those recorded."""
    for shards in manifest.tables.values():
        for shard in shards:
            file = Path(manifest.path) / shard.path
            try:
                rows = pq.ParquetFile(file).metadata.num_rows
            except (pa.ArrowException, OSError) as err:
                return f"shard {shard.path} is not a readable Parquet file: {' '.join(str(err).split())}"
            if rows != shard.rows:
                return f"shard {shard.path} has {rows} rows, the manifest records {shard.rows}"
            if sha256_file(file) != shard.sha256:
                return f"shard {shard.path}: its sha256 differs from the manifest's"
    return None


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def shard_name(table: str, index: int) -> str:
    return f"{table}/part-{index:05d}.parquet"


def shard_paths(artifact_dir: str | Path, table: str, count: int) -> list[str]:
    return [str(Path(artifact_dir) / shard_name(table, i)) for i in range(count)]


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
    return [pq.read_table(f) for f in shard_paths(artifact_dir, table, count)]


class ArtifactStore:
    def __init__(self, home: str | Path):
        self.home = Path(home).expanduser().resolve()
        self.root = self.home / "artifacts"

    def artifact_dir(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def status(self, stage: str, key: str) -> Status:
        """Is this artifact finished and intact? The one answer every reuse of an artifact goes by."""
        path = self.artifact_dir(stage, key)
        if not (path / MANIFEST).exists():
            return Status(stage, key, path)
        manifest, damage = _read_manifest(path / MANIFEST)
        if manifest is not None:
            damage = check_shards(manifest)
        return Status(stage, key, path, manifest, damage)

    def verify(self, stage: str, key: str) -> Status:
        """`status`, and then every shard's sha256 and row count (reads every byte)."""
        status = self.status(stage, key)
        if not status.intact:
            return status
        return Status(stage, key, status.path, status.manifest, verify_shards(status.manifest))

    def manifest(self, stage: str, key: str) -> Manifest | None:
        """The finished artifact, or None if it was never completed; a damaged one is an error, never reused."""
        status = self.status(stage, key)
        if status.damage:
            raise status.error()
        return status.manifest

    def list(self, stage: str | None = None, key_prefix: str = "") -> list[Status]:
        """Every artifact with a manifest (intact or damaged) whose key starts with `key_prefix`, oldest first."""
        dirs = self.root.glob(f"{stage or '*'}/{key_prefix}*/{MANIFEST}") if self.root.exists() else []
        statuses = [self.status(p.parent.parent.name, p.parent.name) for p in dirs]
        # A damaged manifest has no created_at: the file's own time stands in for it.
        return sorted(statuses, key=lambda s: s.manifest.created_at if s.manifest else (s.path / MANIFEST).stat().st_mtime)

    def find(self, key_prefix: str) -> Manifest:
        """A finished, intact artifact by (a unique prefix of) its key, in any stage."""
        hits = self.list(key_prefix=key_prefix) if key_prefix else []
        if not hits:
            raise BardError(f"no finished artifact with key {key_prefix!r} under {self.root}")
        if len(hits) > 1:
            raise BardError(f"key prefix {key_prefix!r} is ambiguous: {', '.join(h.key for h in hits)}")
        if hits[0].damage:
            raise hits[0].error()
        return hits[0].manifest

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
                shard = Shard(path=rel, rows=pq.ParquetFile(file).metadata.num_rows, sha256=sha256_file(file),
                              size=file.stat().st_size)
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
