"""Read-only SQL over the catalog (`bard query`).

Read-only is a property of the connection, not only of a statement filter: the query runs in an in-memory DuckDB
with external access off and its configuration locked, so it can open, write or delete no file at all (a COPY
hidden inside EXPLAIN ANALYZE included). It sees the catalog's tables and each dataset view as Arrow data that
bard reads for it: exactly the shards the view's manifest lists, under this home. The statement filter stays in
front of it for a friendly message.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from bard_core.errors import BardError
from storage import catalog

ALLOWED = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}
CATALOG_TABLES = ("artifacts", "lineage")


def check_read_only(sql: str) -> list:
    """The statements of `sql`, each a SELECT-like one; anything else is refused with what to do instead."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as err:
        raise BardError(f"query: cannot parse the SQL: {err}") from None
    if not statements:
        raise BardError("query: no SQL statement given")
    for statement in statements:
        if statement.type not in ALLOWED:
            kind = statement.type.name
            raise BardError(
                f"query: refused a {kind} statement: `bard query` is read-only "
                "(SELECT, WITH, DESCRIBE, SHOW, SUMMARIZE, EXPLAIN). Export with --format csv|json|parquet --out FILE."
            )
    return statements


def run_query(home: Path, sql: str) -> pa.Table:
    statements = check_read_only(sql)
    home = Path(home).resolve()
    if not catalog.catalog_path(home).exists():
        raise BardError(f"no catalog at {catalog.catalog_path(home)}: run a stage first (bard run --stages problems)")
    tables, views = _read_catalog(home)
    con = duckdb.connect(":memory:")
    try:
        con.execute("set enable_external_access=false")  # no file, extension or secret can be touched from here on
        con.execute("set lock_configuration=true")  # and no query can turn it back on
        for name, table in tables.items():
            con.register(name, table)
        for name, files in views.items():
            con.register(name, _dataset(name, files))
        for statement in statements[:-1]:
            con.execute(statement.query).fetchall()
        return con.sql(statements[-1].query).to_arrow_table()
    except duckdb.PermissionException as err:
        raise BardError(f"query refused: {err}. `bard query` reads only the catalog's tables and views") from None
    except (duckdb.Error, pa.ArrowException) as err:
        raise BardError(f"query failed: {err}") from None
    finally:
        con.close()


def _read_catalog(home: Path) -> tuple[dict[str, pa.Table], dict[str, list[Path]]]:
    """The catalog's own tables, and each dataset view's shard files (absolute, under `home`)."""
    con = catalog.connect(home, read_only=True)
    try:
        names = {row[0] for row in con.execute("select table_name from duckdb_tables()").fetchall()}
        tables = {name: con.table(name).to_arrow_table() for name in CATALOG_TABLES if name in names}
        if "dataset_views" in names:
            rows = con.execute("select name, files from dataset_views").fetchall()
        else:  # a catalog from before dataset_views: each table of the artifact registered last
            rows = _latest_tables(con)
    finally:
        con.close()
    return tables, {name: [home / f for f in json.loads(files)] for name, files in rows}


def _latest_tables(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    latest: dict[str, str] = {}
    for stage, key, manifest in con.execute("select stage, key, manifest from artifacts order by last_used_at").fetchall():
        for table, shards in json.loads(manifest)["tables"].items():
            latest[table] = json.dumps([f"artifacts/{stage}/{key}/{s['path']}" for s in shards])
    return list(latest.items())


def _dataset(name: str, files: list[Path]) -> ds.Dataset:
    """The view's shards as one Arrow dataset (scanned lazily, with DuckDB's filters and projections pushed down)."""
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        raise BardError(f"view {name}: shard {missing[0]} is missing (of {len(files)}): "
                        "`bard artifacts verify` says which artifact is damaged; `bard run --refresh STAGE` rebuilds it")  # fmt: skip
    schema = pa.unify_schemas([pq.read_schema(f) for f in files], promote_options="permissive")
    return ds.dataset([str(f) for f in files], schema=schema, format="parquet")
