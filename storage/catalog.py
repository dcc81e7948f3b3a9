"""The DuckDB catalog (`<home>/catalog.duckdb`): an index of the manifests, and one view per dataset.

The manifests are the source of truth; the catalog can be rebuilt from them at any time. DuckDB lets
one process write a database file or many read it, never both, so writers hold the file for
milliseconds and readers (`bard query`) retry briefly while a writer has it.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import duckdb

from bard_core.errors import BardError
from storage.artifacts import Manifest

CATALOG = "catalog.duckdb"
RETRY_S = 30.0  # how long to keep trying for the file while another process holds it

SCHEMA = """
create table if not exists artifacts (
    key varchar primary key, stage varchar, version integer, path varchar, rows bigint,
    content_hash varchar, created_at timestamp, last_used_at timestamp, flow_run_id varchar, manifest json
);
create table if not exists lineage (
    key varchar, input_name varchar, input_key varchar, primary key (key, input_name)
);
"""


def catalog_path(home: Path) -> Path:
    return Path(home) / CATALOG


def connect(home: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    """Open the catalog, retrying with backoff while another process holds the file."""
    path = catalog_path(home)
    deadline = time.monotonic() + RETRY_S
    delay = 0.01
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as err:
            if "lock" not in str(err).lower() or time.monotonic() >= deadline:
                raise BardError(f"{path}: cannot open the catalog: {err}") from None
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


def register(home: Path, manifest: Manifest) -> None:
    """Index a finished (or reused) artifact and point its datasets' views at it: the latest run wins."""
    now = dt.datetime.now()
    con = connect(home, read_only=False)
    try:
        con.execute("begin")
        con.execute(SCHEMA)
        con.execute(
            "insert or replace into artifacts values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [manifest.key, manifest.stage, manifest.version, manifest.path, manifest.rows(),
             manifest.content_hash, dt.datetime.fromtimestamp(manifest.created_at), now,
             manifest.flow_run_id, manifest.model_dump_json()],
        )
        for name, input_key in manifest.inputs.items():
            con.execute("insert or replace into lineage values (?, ?, ?)", [manifest.key, name, input_key])
        for table in manifest.tables:
            files = str(Path(manifest.path) / table / "part-*.parquet").replace("'", "''")
            con.execute(f'create or replace view "{table}" as select * from read_parquet(\'{files}\')')
        con.execute("commit")
    finally:
        con.close()
