import re
import subprocess
import sys

import pyarrow as pa
import pytest

from bard_core.errors import BardError
from storage import catalog
from storage.artifacts import ArtifactStore, write_table
from storage.query import run_query


def make_artifact(home, key, n, stage="problems"):
    store = ArtifactStore(home)
    path = store.begin(stage, key, {}, {})
    count = write_table(path, stage, pa.table({"uid": [f"{key}-{i}" for i in range(n)], "source": ["s"] * n}), 100)
    manifest = store.finish(stage, key, 1, {}, {stage: count})
    catalog.register(store.home, manifest)
    return manifest


def test_views_follow_the_latest_artifact_and_catalog_indexes_it(tmp_path):
    make_artifact(tmp_path, "a1", 5)
    assert run_query(tmp_path, "select count(*) as n from problems").to_pylist() == [{"n": 5}]
    make_artifact(tmp_path, "a2", 250)
    assert run_query(tmp_path, "select count(*) as n from problems").column("n").to_pylist() == [250]
    keys = run_query(tmp_path, "select key, rows from artifacts order by created_at").to_pylist()
    assert keys == [{"key": "a1", "rows": 5}, {"key": "a2", "rows": 250}]


@pytest.mark.parametrize("sql", [
    "copy (select 1) to 'x.csv'",
    "create table t as select 1",
    "insert into artifacts (key) values ('x')",
    "attach '/tmp/other.duckdb'",
    "install httpfs",
    "load httpfs",
    "set enable_external_access=true",
    "drop view problems",
    "select 1; delete from artifacts",
])
def test_writes_and_escapes_are_refused(tmp_path, sql):
    make_artifact(tmp_path, "a1", 3)
    with pytest.raises(BardError, match="read-only|refused"):
        run_query(tmp_path, sql)


def test_files_outside_the_store_cannot_be_read(tmp_path):
    home = tmp_path / "home"
    make_artifact(home, "a1", 3)
    outside = tmp_path / "secret.csv"
    outside.write_text("a\n1\n")
    with pytest.raises(BardError, match="disabled|Permission"):
        run_query(home, f"select * from read_csv('{outside}')")
    with pytest.raises(BardError, match="no catalog"):
        run_query(tmp_path / "empty", "select 1")


WRITER = """
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from tests.storage.test_query import make_artifact
home, end = Path(sys.argv[1]), time.time() + float(sys.argv[3])
i = 0
while time.time() < end:
    make_artifact(home, f"w{i}", 50 + i)
    i += 1
print(i)
"""


def test_query_works_while_a_pipeline_writes(tmp_path):
    from pathlib import Path

    make_artifact(tmp_path, "w-first", 10)
    root = str(Path(__file__).resolve().parents[2])
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), root, "6"], stdout=subprocess.PIPE, text=True)
    answered = 0
    while writer.poll() is None:
        n = run_query(tmp_path, "select count(*) as n from problems").column("n")[0].as_py()
        assert n >= 10
        answered += 1
    assert writer.returncode == 0
    registered = int(writer.stdout.read())
    assert registered > 5 and answered > 5, (registered, answered)


def snapshot(home) -> dict[str, bytes]:
    from pathlib import Path

    return {str(p): p.read_bytes() for p in sorted(Path(home).rglob("*")) if p.is_file()}


@pytest.mark.parametrize("template", [
    "explain analyze copy (select 'x' as uid) to '{shard}' (format parquet)",  # rewrites a shard in place
    "explain analyze copy (select 1 as a) to '{artifacts}' (format parquet, partition_by (a), overwrite true)",
    "explain copy (select 1) to '{home}/new.csv'",
    "explain analyze export database '{home}/exported'",
    "explain analyze attach '{home}/artifacts/evil.duckdb' as evil",
    "explain analyze install httpfs",
    "explain analyze create table t as select 1",
    "explain analyze set enable_external_access=true",
    "with t as (select 1 as a) select * from t; explain analyze copy (select 2) to '{home}/x.csv'",
    "select * from read_parquet('{shard}') ; copy problems to '{shard}'",
    "explain analyze copy problems to '{home}/artifacts/problems/a1/problems/part-00001.parquet'",
    "summarize select * from read_text('{home}/catalog.duckdb')",
])
def test_nested_and_hidden_writes_change_no_file(tmp_path, template):
    home = tmp_path / "home"
    manifest = make_artifact(home, "a1", 3)
    shard = manifest.files("problems")[0]
    before = snapshot(home)
    sql = template.format(shard=shard, artifacts=home / "artifacts", home=home)
    try:  # refused by the statement filter, the parser or the connection; or run in memory (create table)
        run_query(home, sql)
    except BardError as err:
        assert re.search("read-only|refused|cannot parse|locked", str(err)), err
    assert snapshot(home) == before, "a file under the home was written, deleted or added"
    assert run_query(home, "select count(*) as n from problems").to_pylist() == [{"n": 3}]


@pytest.mark.parametrize("sql", [
    "select * from read_csv('{outside}')",
    "select * from read_text('/etc/passwd')",
    "select * from glob('{home}/*')",
    "select * from '{outside}'",
    "select * from read_parquet('{shard}')",  # even the store's own files: only through the views
])
def test_no_file_can_be_read_except_through_the_views(tmp_path, sql):
    home = tmp_path / "home"
    manifest = make_artifact(home, "a1", 3)
    outside = tmp_path / "secret.csv"
    outside.write_text("a\n1\n")
    with pytest.raises(BardError, match="refused"):
        run_query(home, sql.format(outside=outside, home=home, shard=manifest.files("problems")[0]))


def test_query_output_errors_are_clear(tmp_path):
    from tests.conftest import BARD

    home = tmp_path / "home"
    make_artifact(home, "a1", 3)

    def bard_query(*args):
        run = subprocess.run([BARD, "query", *args, "--home", str(home)], capture_output=True, text=True, timeout=120)
        assert "Traceback" not in run.stderr
        return run

    nested = bard_query("select [1, 2] as l, {'a': 1} as s from problems", "--format", "csv")
    assert nested.returncode == 1 and "cannot hold the list or struct column l, s" in " ".join(nested.stderr.split())
    missing = bard_query("select 1", "--format", "json", "--out", str(tmp_path / "no" / "such" / "dir" / "x.json"))
    assert missing.returncode == 1 and "does not exist" in " ".join(missing.stderr.split())
    into_store = bard_query("select 1 as a", "--format", "parquet", "--out", str(home / "artifacts" / "x.parquet"))
    assert into_store.returncode == 1 and "inside the artifact store" in " ".join(into_store.stderr.split())
    ok = bard_query("select uid from problems order by uid", "--format", "csv", "--out", str(tmp_path / "u.csv"))
    assert ok.returncode == 0 and (tmp_path / "u.csv").read_text().splitlines() == ['"uid"', '"a1-0"', '"a1-1"', '"a1-2"']
