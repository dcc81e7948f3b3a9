"""A Ray cluster of two nodes on this machine (a head and a worker, two raylets on loopback), as a user would start
one with `ray start`: a stage attached to it with `ray.address` spreads its shards over both nodes and commits
the same artifact as a local run."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import BARD, ROOT, free_port

RAY = str(Path(sys.executable).with_name("ray"))
SETS = ["problems.sources=[{kind: arithmetic, size: 400, seed: 0, split: train}]", "problems.shard_rows=50"]


def alive_nodes(address: str) -> int:
    probe = "import ray; ray.init(address=%r, log_to_driver=False); print(sum(n['Alive'] for n in ray.nodes()))" % address
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    return int(out.stdout.strip() or 0)


@pytest.fixture(scope="module")
def two_nodes():
    temp = tempfile.mkdtemp(prefix="ray2-")  # short: Ray's socket paths live under it
    port = free_port()
    address = f"127.0.0.1:{port}"
    common = ["--block", "--num-cpus=1", "--node-ip-address=127.0.0.1", "--disable-usage-stats"]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    nodes = [subprocess.Popen([RAY, "start", "--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={temp}",
                               *common], env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while alive_nodes(address) < 1:
            assert time.monotonic() < deadline and nodes[0].poll() is None, "the head node did not start"
            time.sleep(1)
        nodes.append(subprocess.Popen([RAY, "start", f"--address={address}", *common], env=env, start_new_session=True,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))  # fmt: skip
        while alive_nodes(address) < 2:
            assert time.monotonic() < deadline and nodes[1].poll() is None, "the worker node did not join"
            time.sleep(1)
        yield address
    finally:
        for node in reversed(nodes):
            if node.poll() is None:
                os.killpg(node.pid, signal.SIGTERM)
                node.wait(timeout=60)


def stage_problems(home: Path, *sets: str) -> None:
    args = [a for s in (*SETS, *sets) for a in ("--set", s)]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    run = subprocess.run([BARD, "stage", "problems", "--home", str(home), *args], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=600)  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]


def manifest(home: Path) -> dict:
    (path,) = home.glob("artifacts/problems/*/manifest.json")
    return json.loads(path.read_text())


def test_a_stage_attached_to_a_two_node_cluster_runs_shards_on_both_and_commits_the_same_artifact(two_nodes, tmp_path):
    stage_problems(tmp_path / "cluster", f"ray.address={two_nodes}")
    on_cluster = manifest(tmp_path / "cluster")
    assert on_cluster["stats"]["shards"] == 8
    assert on_cluster["stats"]["nodes"] == 2, "the shards were spread over both raylets"

    stage_problems(tmp_path / "local")  # the same stage on a local Ray
    local = manifest(tmp_path / "local")
    assert local["key"] == on_cluster["key"] and local["stats"]["nodes"] == 1
    rows = {}
    for name in ("cluster", "local"):
        files = sorted((tmp_path / name).glob("artifacts/problems/*/problems/*.parquet"))
        rows[name] = pq.read_table(files).to_pylist()
    assert len(rows["cluster"]) == 400 and rows["cluster"] == rows["local"]
