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


# Stage `teacher`: one row per sample. thinking_tokens are the student's tokens (budget.count decides
# thinking or whole completion); completion_tokens are the teacher's own, as its engine reported them.
TEACHER_SAMPLES = pa.schema(
    [
        ("uid", pa.string()),  # <problem_uid>/s<sample_idx>
        ("problem_uid", pa.string()),
        ("source", pa.string()),
        ("sample_idx", pa.int32()),
        ("model", pa.string()),
        ("prompt", pa.string()),  # the user turn sent (the system prompt is in the artifact's config)
        ("completion", pa.string()),
        ("thinking", pa.string()),
        ("answer_pred", pa.string()),
        ("correct", pa.bool_()),  # null: the gold cannot be parsed
        ("thinking_tokens", pa.int64()),
        ("completion_tokens", pa.int64()),
        ("finish_reason", pa.string()),
        ("truncated", pa.bool_()),  # cut off by max_tokens, or thinking never closed: kept, flagged
        ("seed", pa.int64()),
    ]
)

# Stage `compress`: one row per (teacher sample, budget); rejected rewrites are kept with their reason.
COMPRESSIONS = pa.schema(
    [
        ("uid", pa.string()),  # <sample_uid>/b<budget>
        ("sample_uid", pa.string()),
        ("problem_uid", pa.string()),
        ("source", pa.string()),
        ("budget", pa.int64()),
        ("target", pa.int64()),  # the budget asked for in the last attempt (tighter after an overshoot)
        ("attempts", pa.int32()),
        ("model", pa.string()),
        ("completion", pa.string()),  # the whole rewrite: thinking and final answer
        ("thinking", pa.string()),
        ("thinking_tokens", pa.int64()),
        ("teacher_thinking_tokens", pa.int64()),
        ("answer_pred", pa.string()),
        ("within_budget", pa.bool_()),
        ("answer_preserved", pa.bool_()),
        ("accepted", pa.bool_()),
        ("reject_reason", pa.string()),  # null when accepted; else format, answer_changed, over_budget or too_long
        ("seed", pa.int64()),
    ]
)


def to_table(rows: list[dict], schema: pa.Schema) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=schema)


# Stage `eval`: one row per sample of the budget sweep. thinking_tokens are budget tokens (the student's
# tokenizer); within_budget is thinking_tokens <= budget x (1 + reward.tau).
EVAL_SAMPLES = pa.schema(
    [
        ("uid", pa.string()),  # <model>/<problem_uid>/b<budget>/s<sample_idx>
        ("model", pa.string()),  # the name in eval.models
        ("mode", pa.string()),  # budget | truncate
        ("benchmark", pa.string()),  # the problem's source
        ("problem_uid", pa.string()),
        ("budget", pa.int64()),
        ("sample_idx", pa.int64()),
        ("completion", pa.string()),
        ("answer_pred", pa.string()),
        ("thinking_tokens", pa.int64()),
        ("completion_tokens", pa.int64()),
        ("correct", pa.bool_()),  # null: the gold could not be parsed
        ("within_budget", pa.bool_()),
        ("finish_reason", pa.string()),
        ("seed", pa.int64()),
    ]
)
