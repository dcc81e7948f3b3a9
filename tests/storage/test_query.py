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
