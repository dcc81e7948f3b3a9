"""Artifacts are checked, not trusted: a missing, resized or rewritten shard or a bad manifest is reported by
name and never reused; views read the manifest's own shards; a moved or copied home keeps working."""

import json
import shutil
import subprocess

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bard_core.errors import BardError
from storage import catalog
from storage.artifacts import MANIFEST, ArtifactStore, write_table
from storage.query import run_query
from tests.conftest import BARD

BAD_MANIFESTS = {"empty": b"", "truncated": b'{"stage": "probl', "garbage": b"\x00\xffnot json", "not a manifest": b"{}"}


def make(home, key, n=25, stage="problems"):
    """A finished artifact of `n` rows in shards of 10, indexed in the catalog."""
    store = ArtifactStore(home)
    path = store.begin(stage, key, {}, {})
    count = write_table(path, stage, pa.table({"uid": [f"{key}-{i}" for i in range(n)]}), shard_rows=10)
    manifest = store.finish(stage, key, 1, {}, {stage: count})
    catalog.register(store.home, manifest)
    return manifest


def shard(home, key, index, stage="problems"):
    return ArtifactStore(home).artifact_dir(stage, key) / stage / f"part-{index:05d}.parquet"


def flip_a_data_byte(file):
    """Change one byte of the first column chunk (the footer stays readable): same size, other sha256."""
    data = bytearray(file.read_bytes())
    data[20] ^= 0xFF
    file.write_bytes(bytes(data))


def test_intact_artifact_records_sizes_and_passes_both_checks(tmp_path):
    manifest = make(tmp_path, "k1")
    store = ArtifactStore(tmp_path)
    assert [s.size for s in manifest.tables["problems"]] == [shard(tmp_path, "k1", i).stat().st_size for i in range(3)]
    assert store.status("problems", "k1").intact and store.verify("problems", "k1").intact
    missing = store.status("problems", "never")
    assert missing.manifest is None and missing.damage is None and not missing.intact


def test_missing_or_resized_shard_is_damage_named_by_file(tmp_path):
    store = ArtifactStore(tmp_path)
    make(tmp_path, "gone")
    shard(tmp_path, "gone", 1).unlink()
    assert store.status("problems", "gone").damage == "shard problems/part-00001.parquet is missing"
    make(tmp_path, "cut")
    data = shard(tmp_path, "cut", 2).read_bytes()
    shard(tmp_path, "cut", 2).write_bytes(data[:-7])
    assert store.status("problems", "cut").damage == (
        f"shard problems/part-00002.parquet is {len(data) - 7} bytes, the manifest records {len(data)}")
    # Every reuse goes through the check: none hands out a damaged artifact.
    with pytest.raises(BardError, match=r"problems artifact gone .* is damaged: shard problems/part-00001.parquet "
                                        r"is missing; rerun with --refresh problems"):
        store.manifest("problems", "gone")
    with pytest.raises(BardError, match="part-00002.parquet is .* bytes"):
        store.find("cu")


@pytest.mark.parametrize("content", BAD_MANIFESTS.values(), ids=BAD_MANIFESTS.keys())
def test_a_bad_manifest_is_damage_not_a_crash(tmp_path, content):
    make(tmp_path, "bad")
    make(tmp_path, "good")
    (ArtifactStore(tmp_path).artifact_dir("problems", "bad") / MANIFEST).write_bytes(content)
    store = ArtifactStore(tmp_path)
    status = store.status("problems", "bad")
    assert status.manifest is None and status.damage.startswith("manifest.json is unreadable (")
    with pytest.raises(BardError, match="manifest.json is unreadable"):
        store.manifest("problems", "bad")
    # The listing keeps the others, and says which one is bad.
    assert {(s.key, bool(s.damage)) for s in store.list()} == {("bad", True), ("good", False)}


def test_verify_finds_a_shard_rewritten_at_the_same_size(tmp_path):
    store = ArtifactStore(tmp_path)
    make(tmp_path, "same")
    flip_a_data_byte(shard(tmp_path, "same", 0))  # the cheap size check cannot see it, the sha256 does
    assert store.status("problems", "same").intact
    assert store.verify("problems", "same").damage == "shard problems/part-00000.parquet: its sha256 differs from the manifest's"
    make(tmp_path, "junk")
    shard(tmp_path, "junk", 2).write_bytes(b"x" * shard(tmp_path, "junk", 2).stat().st_size)
    assert store.verify("problems", "junk").damage.startswith("shard problems/part-00002.parquet is not a readable Parquet file: ")
    make(tmp_path, "rows")
    pq.write_table(pa.table({"uid": ["x"]}), shard(tmp_path, "rows", 1))
    manifest = json.loads((store.artifact_dir("problems", "rows") / MANIFEST).read_text())
    manifest["tables"]["problems"][1]["size"] = None  # as an old manifest would have it: checked by existence
    (store.artifact_dir("problems", "rows") / MANIFEST).write_text(json.dumps(manifest))
    assert store.status("problems", "rows").intact
    assert store.verify("problems", "rows").damage == "shard problems/part-00001.parquet has 1 rows, the manifest records 10"


def test_a_manifest_from_before_sizes_still_loads(tmp_path):
    store = ArtifactStore(tmp_path)
    make(tmp_path, "old")
    path = store.artifact_dir("problems", "old") / MANIFEST
    manifest = json.loads(path.read_text())
    for s in manifest["tables"]["problems"]:
        del s["size"]
    path.write_text(json.dumps(manifest))
    assert store.status("problems", "old").intact and store.verify("problems", "old").intact
    shard(tmp_path, "old", 0).unlink()
    assert store.status("problems", "old").damage == "shard problems/part-00000.parquet is missing"


def test_views_read_the_manifests_shards_only(tmp_path):
    make(tmp_path, "v1", n=25)
    # A stray file next to the shards is not read ...
    pq.write_table(pa.table({"uid": ["stray"]}), shard(tmp_path, "v1", 7))
    assert run_query(tmp_path, "select count(*) as n from problems").to_pylist() == [{"n": 25}]
    # ... and a deleted shard is an error naming it, never fewer rows.
    shard(tmp_path, "v1", 1).unlink()
    with pytest.raises(BardError, match="part-00001.parquet"):
        run_query(tmp_path, "select count(*) as n from problems")


def test_a_moved_or_copied_home_keeps_its_views_and_manifests(tmp_path):
    make(tmp_path / "home", "m1", n=25)
    shutil.copytree(tmp_path / "home", tmp_path / "copy")
    (tmp_path / "home").rename(tmp_path / "moved")
    for home in ("moved", "copy"):
        assert run_query(tmp_path / home, "select count(*) as n from problems").to_pylist() == [{"n": 25}]
        manifest = ArtifactStore(tmp_path / home).manifest("problems", "m1")
        assert manifest.path == str((tmp_path / home / "artifacts/problems/m1").resolve())
        assert pq.read_table(manifest.files("problems")[0]).num_rows == 10
    # The copy reads its own files, not the original's.
    shutil.rmtree(tmp_path / "moved")
    assert run_query(tmp_path / "copy", "select count(*) as n from problems").to_pylist() == [{"n": 25}]
    # Opened for writing, the catalog re-points its views for good: plain DuckDB reads them too.
    make(tmp_path / "copy", "m2", n=5, stage="teacher_samples")
    con = duckdb.connect(str(tmp_path / "copy" / "catalog.duckdb"), read_only=True)
    assert con.execute("select count(*) from problems").fetchall() == [(25,)]
    con.close()


def test_cli_lists_and_verifies(tmp_path):
    make(tmp_path, "aaa-good")
    make(tmp_path, "bbb-cut")
    make(tmp_path, "ccc-bad")
    flip_a_data_byte(shard(tmp_path, "bbb-cut", 0))
    (ArtifactStore(tmp_path).artifact_dir("problems", "ccc-bad") / MANIFEST).write_text('{"stage": "pro')

    def bard(*args):
        return subprocess.run([BARD, "artifacts", "--home", str(tmp_path), *args], capture_output=True, text=True,
                              timeout=120)  # fmt: skip

    listing = bard()
    assert listing.returncode == 0, listing.stderr
    out = " ".join(listing.stdout.split())
    assert "aaa-good" in out and "bbb-cut" in out and "ccc-bad" in out  # a bad manifest does not hide the others
    assert "problems artifact ccc-bad" in out and "is damaged: manifest.json is unreadable" in out
    verified = bard("verify")
    assert verified.returncode == 1 and "Traceback" not in verified.stdout + verified.stderr
    lines = dict(line.split(" ", 2)[1:] for line in verified.stdout.splitlines())
    assert lines["aaa-good"] == "ok (25 rows)"
    assert lines["bbb-cut"] == "damaged: shard problems/part-00000.parquet: its sha256 differs from the manifest's"
    assert lines["ccc-bad"].startswith("damaged: manifest.json is unreadable (truncated or not a manifest)")
    one = bard("verify", "aaa")
    assert one.returncode == 0 and one.stdout.strip() == "problems aaa-good ok (25 rows)"
    unknown = bard("verify", "zzz")
    assert unknown.returncode == 1 and "error: no finished artifact with key 'zzz'" in unknown.stderr
