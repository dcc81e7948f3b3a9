import subprocess
import sys
import time

import pyarrow as pa
import pytest

from bard_core.errors import BardError
from storage.artifacts import ArtifactStore, artifact_key, commit_shard, has_shard, write_table
from storage.lock import artifact_lock


def test_key_is_stable_and_changes_with_each_part():
    base = artifact_key("compress", 1, {"budgets": [500, 1000], "model": "m"}, {"teacher": "abc"})
    assert base == artifact_key("compress", 1, {"model": "m", "budgets": [500, 1000]}, {"teacher": "abc"})
    assert len({
        base,
        artifact_key("teacher", 1, {"budgets": [500, 1000], "model": "m"}, {"teacher": "abc"}),
        artifact_key("compress", 2, {"budgets": [500, 1000], "model": "m"}, {"teacher": "abc"}),
        artifact_key("compress", 1, {"budgets": [500, 2000], "model": "m"}, {"teacher": "abc"}),
        artifact_key("compress", 1, {"budgets": [500, 1000], "model": "m"}, {"teacher": "abd"}),
    }) == 5


def test_shards_commit_atomically_and_manifest_is_written_last(tmp_path):
    store = ArtifactStore(tmp_path)
    path = store.begin("problems", "k1", {"a": 1}, {})
    assert store.manifest("problems", "k1") is None
    data = pa.table({"uid": [f"u{i}" for i in range(25)]})
    assert write_table(path, "rows", data, shard_rows=10) == 3
    assert has_shard(path, "rows", 2) and not has_shard(path, "rows", 3)
    assert not list(path.rglob("*.tmp")), "no temporary files are left behind"
    manifest = store.finish("problems", "k1", 1, {}, {"rows": 3}, stats={"n": 25})
    assert manifest.rows("rows") == 25 and [s.rows for s in manifest.tables["rows"]] == [10, 10, 5]
    assert store.manifest("problems", "k1") == manifest
    assert store.find("k") == manifest and [m.key for m in store.list("problems")] == ["k1"]
    # Re-writing the same data gives the same content hash; other data does not.
    commit_shard(path, "rows", 2, data.slice(20, 5))
    assert store.finish("problems", "k1", 1, {}, {"rows": 3}).content_hash == manifest.content_hash
    commit_shard(path, "rows", 2, data.slice(0, 5))
    assert store.finish("problems", "k1", 1, {}, {"rows": 3}).content_hash != manifest.content_hash


def test_finish_refuses_a_missing_shard(tmp_path):
    store = ArtifactStore(tmp_path)
    path = store.begin("problems", "k2", {}, {})
    commit_shard(path, "rows", 0, pa.table({"a": [1]}))
    with pytest.raises(BardError, match="part-00001.parquet is missing"):
        store.finish("problems", "k2", 1, {}, {"rows": 2})
    assert store.manifest("problems", "k2") is None


HOLD = """
import sys, time
from pathlib import Path
from storage.lock import artifact_lock
with artifact_lock(Path(sys.argv[1]), "problems", "k", 0):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def _holder(tmp_path, seconds):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_lock_fails_clearly_while_another_process_writes(tmp_path):
    proc = _holder(tmp_path, 30)
    try:
        with pytest.raises(BardError) as err:
            with artifact_lock(tmp_path, "problems", "k", timeout_s=0.3):
                pass
        assert f"pid {proc.pid}" in str(err.value) and "being written by another process" in str(err.value)
    finally:
        proc.kill()
        proc.wait()
    # The OS released the killed holder's lock: no stale lock to clean up by hand.
    with artifact_lock(tmp_path, "problems", "k", timeout_s=0):
        pass


def test_lock_waits_for_the_other_writer(tmp_path):
    proc = _holder(tmp_path, 1.0)
    started = time.monotonic()
    with artifact_lock(tmp_path, "problems", "k", timeout_s=30):
        waited = time.monotonic() - started
    proc.wait()
    assert 0.3 < waited < 20
