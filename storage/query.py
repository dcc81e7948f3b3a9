"""Read-only SQL over the catalog (`bard query`).

Two fences: only SELECT-like statements are accepted (no COPY, ATTACH, INSTALL/LOAD, writes), and
the connection itself may only touch files under the store's home, locked so a query cannot undo it.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa

from bard_core.errors import BardError
from storage import catalog

ALLOWED = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}


def check_read_only(sql: str) -> None:
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


def run_query(home: Path, sql: str) -> pa.Table:
    check_read_only(sql)
    home = Path(home).resolve()
    if not catalog.catalog_path(home).exists():
        raise BardError(f"no catalog at {catalog.catalog_path(home)}: run a stage first (bard run --stages problems)")
    con = catalog.connect(home, read_only=True)
    try:
        con.execute(f"set allowed_directories=['{str(home).replace(chr(39), chr(39) * 2)}/']")
        con.execute("set enable_external_access=false")
        con.execute("set lock_configuration=true")
        statements = duckdb.extract_statements(sql)
        for statement in statements[:-1]:
            con.execute(statement.query).fetchall()
        result = con.sql(statements[-1].query).to_arrow_table()
    except duckdb.Error as err:
        raise BardError(f"query failed: {err}") from None
    finally:
        con.close()
    return result
