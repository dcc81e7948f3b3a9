"""A Ray cluster of two nodes on this machine (a head and a worker, two raylets on loopback), as a user would start
one with `ray start` and token authentication on (README, "On a Ray cluster"): a stage attached to it with
`ray.address` and the token in RAY_AUTH_TOKEN spreads its shards over both nodes and commits the same artifact as a
local run; a driver without the token is refused."""

import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import BARD, ROOT, free_port
from tests.tasks.test_ray_security import STRANGER

RAY = str(Path(sys.executable).with_name("ray"))
SETS = ["problems.sources=[{kind: arithmetic, size: 400, seed: 0, split: train}]", "problems.shard_rows=50"]


def alive_nodes(address: str, env: dict) -> int:
    probe = "import ray; ray.init(address=%r, log_to_driver=False); print(sum(n['Alive'] for n in ray.nodes()))" % address
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    return int(out.stdout.strip() or 0)


@pytest.fixture(scope="module")
def two_nodes():
    temp = tempfile.mkdtemp(prefix="ray2-")  # short: Ray's socket paths live under it
    port = free_port()
    address = f"127.0.0.1:{port}"
    common = ["--block", "--num-cpus=1", "--node-ip-address=127.0.0.1", "--disable-usage-stats"]
    token = secrets.token_hex(32)  # as `ray get-auth-token --generate` makes one
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token,
           "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}  # else each node's SIGTERM drains for 30 s
    env.pop("RAY_ADDRESS", None)
    nodes = [subprocess.Popen([RAY, "start", "--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={temp}",
                               *common], env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while alive_nodes(address, env) < 1:
            assert time.monotonic() < deadline and nodes[0].poll() is None, "the head node did not start"
            time.sleep(1)
        nodes.append(subprocess.Popen([RAY, "start", f"--address={address}", *common], env=env, start_new_session=True,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))  # fmt: skip
        while alive_nodes(address, env) < 2:
            assert time.monotonic() < deadline and nodes[1].poll() is None, "the worker node did not join"
            time.sleep(1)
        yield address, token
    finally:
        for node in reversed(nodes):
            if node.poll() is None:
                os.killpg(node.pid, signal.SIGTERM)
                node.wait(timeout=60)


def stage_problems(home: Path, *sets: str, token: str | None = None, ok: bool = True):
    """`bard stage problems`, which must succeed (or fail if not `ok`); `token`: the cluster's, in RAY_AUTH_TOKEN
    (with RAY_AUTH_MODE unset, as a user has it)."""
    args = [a for s in (*SETS, *sets) for a in ("--set", s)]
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    if not ok:
        env["RAY_NUM_REDIS_GET_RETRIES"] = "3"  # a refused driver gives up after 3 tries (a second each), not Ray's 20
    if token:
        env["RAY_AUTH_TOKEN"] = token
    run = subprocess.run([BARD, "stage", "problems", "--home", str(home), *args], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=600)  # fmt: skip
    assert (run.returncode == 0) == ok, run.stdout[-3000:] + run.stderr[-3000:]
    return run


def manifest(home: Path) -> dict:
    (path,) = home.glob("artifacts/problems/*/manifest.json")
    return json.loads(path.read_text())


@pytest.mark.slow  # 70 s with the two nodes' start; `make test-slow` (and CI) run it
def test_a_stage_attached_to_a_two_node_cluster_runs_shards_on_both_and_commits_the_same_artifact(two_nodes, tmp_path):
    address, token = two_nodes
    stage_problems(tmp_path / "cluster", f"ray.address={address}", token=token)
    on_cluster = manifest(tmp_path / "cluster")
    assert on_cluster["stats"]["shards"] == 8
    assert on_cluster["stats"]["nodes"] == 2, "the shards were spread over both raylets"

    stage_problems(tmp_path / "local", token=token)  # the same stage on a local Ray (with a token of its own)
    local = manifest(tmp_path / "local")
    assert local["key"] == on_cluster["key"] and local["stats"]["nodes"] == 1
    rows = {}
    for name in ("cluster", "local"):
        files = sorted((tmp_path / name).glob("artifacts/problems/*/problems/*.parquet"))
        rows[name] = pq.read_table(files).to_pylist()
    assert len(rows["cluster"]) == 400 and rows["cluster"] == rows["local"]


def test_the_cluster_refuses_a_driver_without_its_token_and_bard_says_so(two_nodes, tmp_path):
    address, _ = two_nodes
    run = stage_problems(tmp_path / "home", f"ray.address={address}", token="0" * 64, ok=False)
    said = " ".join(run.stderr.split())  # unwrapped
    assert f"error: stage problems failed: the Ray cluster at {address} refused bard: it wants its token" in said
    assert run.returncode == 1

    target = tmp_path / "written-by-the-stranger"
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "RAY_NUM_REDIS_GET_RETRIES": "3"}  # see test_ray_security
    stranger = subprocess.run([sys.executable, "-c", STRANGER, address, str(target)], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=240)  # fmt: skip
    assert stranger.returncode != 0 and "Authentication token is missing or incorrect" in stranger.stderr
    assert not target.exists()
