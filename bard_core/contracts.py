"""Arrow schemas of the Parquet data contracts (DESIGN.md, "Data contracts").

Every shard is written with its table's schema, so an empty shard still has the right columns
and DuckDB views over the shards never change type between artifacts.
"""

import pyarrow as pa

PROBLEMS = pa.schema(
    [
        ("uid", pa.string()),
        ("source", pa.string()),
        ("question", pa.string()),
        ("answer", pa.string()),
        ("choices", pa.list_(pa.string())),  # null unless multiple choice
        ("split", pa.string()),
        ("meta", pa.string()),  # JSON object: what the source carried beyond the contract
    ]
)

# Rows quarantined by the `problems` stage: where they came from and why, never silently dropped.
PROBLEMS_REJECTED = pa.schema(
    [
        ("source", pa.string()),
        ("file", pa.string()),
        ("line", pa.int64()),  # 1-based line (JSONL) or row (other kinds)
        ("field", pa.string()),  # the offending field, "" when the row as a whole is bad
        ("reason", pa.string()),
        ("raw", pa.string()),  # the start of the offending row, for a human to look at
    ]
)


def to_table(rows: list[dict], schema: pa.Schema) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=schema)
