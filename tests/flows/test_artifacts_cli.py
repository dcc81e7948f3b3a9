"""What a user sees when an artifact was damaged after it was finished: a real `bard run`, then the files are
deleted, garbled or moved, and the next commands say so by name (never "cached", never a traceback)."""

import json
import shutil
import subprocess

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bard_core.errors import BardError
from storage.artifacts import MANIFEST
from tests.conftest import BARD, DATA


def bard(*args):
    result = subprocess.run([BARD, *args], capture_output=True, text=True, timeout=300)
    assert "Traceback" not in result.stdout + result.stderr, result.stdout + result.stderr
    return result, " ".join((result.stdout + result.stderr).split())


@pytest.mark.slow  # 64 s (three `bard run`s); the status checks it relies on are tested in tests/storage/test_verify.py
def test_damaged_problems_artifact_is_reported_refused_and_rebuilt_on_refresh(tmp_path):
    home = tmp_path / "home"
    config = tmp_path / "c.yaml"
    config.write_text(f"problems:\n  shard_rows: 10\n  sources:\n    - {{kind: aime, path: '{DATA}/aime24.jsonl', split: test}}\n")
    run = ["run", "--stages", "problems", "--config", str(config)]
    done, _ = bard(*run, "--home", str(home))
    assert done.returncode == 0, done.stderr
    (artifact,) = (home / "artifacts" / "problems").iterdir()
    key, table = artifact.name, artifact / "problems"
    assert len(json.loads((artifact / MANIFEST).read_text())["tables"]["problems"]) == 3

    # A deleted shard: the plan says so, the run stops before doing anything, the listing and verify say so.
    (table / "part-00001.parquet").unlink()
    damaged = f"damaged: shard problems/part-00001.parquet is missing; rerun with --refresh problems"
    dry, out = bard(*run, "--home", str(home), "--dry-run")
    assert dry.returncode == 0 and damaged in out and "cached" not in out
    refused, out = bard(*run, "--home", str(home))
    assert refused.returncode == 1 and f"error: problems artifact {key}" in out and damaged.removeprefix("damaged") in out
    listed, out = bard("artifacts", "--home", str(home))
    assert listed.returncode == 0 and f"problems artifact {key} ({artifact}) is {damaged}" in out
    verified, out = bard("artifacts", "--home", str(home), "verify")
    assert verified.returncode == 1 and f"problems {key} damaged: shard problems/part-00001.parquet is missing" in out

    # A truncated manifest: reported the same way, and --refresh rebuilds it (and nothing is reused from it).
    (artifact / MANIFEST).write_text('{"stage": "problems", "ke')
    dry, out = bard(*run, "--home", str(home), "--dry-run")
    assert "damaged: manifest.json is unreadable (truncated or not a manifest)" in out and "--refresh problems" in out
    rebuilt, out = bard(*run, "--home", str(home), "--refresh", "problems")
    assert rebuilt.returncode == 0, out
    verified, out = bard("artifacts", "--home", str(home), "verify")
    assert verified.returncode == 0 and f"problems {key} ok (30 rows)" in out

    # A moved home: queries and reuse work there; a stray file next to the shards is not read.
    moved = tmp_path / "moved"
    home.rename(moved)
    pq.write_table(pa.table({"uid": ["stray"]}), moved / "artifacts" / "problems" / key / "problems" / "part-00009.parquet")
    counted, out = bard("query", "select count(*) as n from problems", "-f", "json", "--home", str(moved))
    assert counted.returncode == 0 and json.loads(counted.stdout) == {"n": 30}, out
    cached, out = bard(*run, "--home", str(moved))
    assert cached.returncode == 0 and "cached (30 rows)" in out and "nothing to run" in out

    # The pipeline flow itself (a run started from the Prefect UI) refuses a damaged artifact the same way.
    from flows.pipeline import pipeline_flow

    (moved / "artifacts" / "problems" / key / "problems" / "part-00002.parquet").write_bytes(b"")
    with pytest.raises(BardError, match="part-00002.parquet is 0 bytes, the manifest records"):
        pipeline_flow.fn(config=str(config), stages=["problems"], home=str(moved))
    shutil.rmtree(moved)
