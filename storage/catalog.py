"""The DuckDB catalog (`<home>/catalog.duckdb`): an index of the manifests, and one view per dataset.

The manifests are the source of truth; the catalog can be rebuilt from them at any time. DuckDB lets
one process write a database file or many read it, never both, so writers hold the file for
milliseconds and readers (`bard query`) retry briefly while a writer has it.

Each view reads exactly the shards its manifest lists (a stray file is not read, a missing one is an error).
The list, relative to the home, is kept in `dataset_views` (what `bard query` reads); the views themselves
hold absolute paths (for DuckDB opened by hand), re-pointed when the catalog is next opened for writing in
a home that was moved or copied since they were made.
"""

from __future__ import annotations

import datetime as dt
import json
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
create table if not exists dataset_views (
    name varchar primary key, key varchar, home varchar, files json  -- files relative to home
);
"""


def catalog_path(home: Path) -> Path:
    return Path(home) / CATALOG


def connect(home: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    """Open the catalog, retrying with backoff while another process holds the file; opened for writing, its
    views are re-pointed into this home if it was moved or copied."""
    home = Path(home).resolve()
    path = catalog_path(home)
    deadline = time.monotonic() + RETRY_S
    delay = 0.01
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only)
            break
        except duckdb.IOException as err:
            if "lock" not in str(err).lower() or time.monotonic() >= deadline:
                raise BardError(f"{path}: cannot open the catalog: {err}") from None
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
    if not read_only:
        try:
            _repoint(con, home)
        except BaseException:
            con.close()
            raise
    return con


def _create_view(con: duckdb.DuckDBPyConnection, name: str, files: list[Path]) -> None:
    listed = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)
    con.execute(f'create or replace view "{name}" as select * from read_parquet([{listed}])')


def _repoint(con: duckdb.DuckDBPyConnection, home: Path) -> None:
    """Views made in another place (the home was moved or copied) are made again for this one."""
    try:
        stale = con.execute("select name, files from dataset_views where home <> ?", [str(home)]).fetchall()
    except duckdb.CatalogException:
        return  # a new catalog, or one from before `dataset_views` (its views are re-made on the next run)
    for name, files in stale:
        try:
            _create_view(con, name, [home / f for f in json.loads(files)])
        except duckdb.IOException:
            pass  # a shard gone from this home: the run that checks the artifact says so; don't block the catalog
    if stale:
        con.execute("update dataset_views set home = ?", [str(home)])


def register(home: Path, manifest: Manifest) -> None:
    """Index a finished (or reused) artifact and point its datasets' views at it: the latest run wins."""
    now = dt.datetime.now()
    home = Path(home).resolve()
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
        for table, shards in manifest.tables.items():
            # The manifest's own shard list, never a glob: a deleted shard fails loudly, a stray file is not read.
            files = [f"artifacts/{manifest.stage}/{manifest.key}/{shard.path}" for shard in shards]
            if not files:  # nothing to read: no view rather than one over another artifact's data
                con.execute(f'drop view if exists "{table}"')
                con.execute("delete from dataset_views where name = ?", [table])
                continue
            _create_view(con, table, [home / f for f in files])
            con.execute("insert or replace into dataset_views values (?, ?, ?, ?)",
                        [table, manifest.key, str(home), json.dumps(files)])
        con.execute("commit")
    finally:
        con.close()
