"""The Ray that a local run starts is its own: its servers listen on 127.0.0.1 only, a driver without the run's token
is refused (a stranger on this machine connects to the run's GCS port and tries to run a task that writes a file),
and a run that ends, normally or killed with kill -9, takes all of its Ray processes with it. Each driver here is a
separate process that starts its Ray with `ensure_ray`, as `bard run` does."""

import os
import signal
import subprocess
import sys

import psutil
import pytest

from tests.conftest import ROOT

# A run's driver: starts the local Ray, runs one task (so that a worker exists), prints its GCS address, then ends
# when its stdin closes. It imports `ray` first, as a training stage that starts the run's Ray once did: Ray reads
# the switch that keeps it on 127.0.0.1 when it is imported.
DRIVER = """
import sys
import ray
from bard_core.config import RayConfig
from tasks.ray_runtime import ensure_ray
ensure_ray(RayConfig(num_cpus=1))
ray.get(ray.remote(lambda: 1).remote())
print(ray.get_runtime_context().gcs_address, flush=True)
sys.stdin.read()
"""

# The stranger: a driver of its own that attaches to the GCS at argv[1] and runs a task writing the file argv[2].
STRANGER = """
import sys, ray
ray.init(address=sys.argv[1], log_to_driver=False)
def write(path):
    with open(path, "w") as f:
        f.write("a stranger was here")
ray.get(ray.remote(write).remote(sys.argv[2]), timeout=60)
"""

LOOPBACK = {"127.0.0.1", "::ffff:127.0.0.1", "::1"}


def start_driver() -> tuple[subprocess.Popen, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["RAY_AUTH_MODE"] = "disabled"  # what a user may have set: it does not apply to the local Ray
    driver = subprocess.Popen([sys.executable, "-c", DRIVER], cwd=ROOT, env=env, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    gcs = driver.stdout.readline().strip()
    assert gcs, "the driver did not start its Ray"
    return driver, gcs


def ray_processes(driver: subprocess.Popen) -> list[psutil.Process]:
    """The driver's Ray: every process under it (GCS, raylet, agents, workers)."""
    return psutil.Process(driver.pid).children(recursive=True)


@pytest.fixture(scope="module")
def run():
    driver, gcs = start_driver()
    yield driver, gcs
    if driver.poll() is None:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()


def test_the_local_ray_listens_on_loopback_only(run):
    driver, _ = run
    listening = {}
    for proc in [psutil.Process(driver.pid), *ray_processes(driver)]:
        for conn in proc.net_connections("tcp"):
            if conn.status == psutil.CONN_LISTEN:
                listening[f"{conn.laddr.ip}:{conn.laddr.port}"] = proc.name()
    assert len(listening) >= 5, listening  # the GCS, the raylet, the agents, the workers
    assert {a: n for a, n in listening.items() if a.rsplit(":", 1)[0] not in LOOPBACK} == {}


@pytest.mark.parametrize("token", [None, "0" * 64], ids=["no token", "a wrong token"])
def test_a_driver_without_the_runs_token_is_refused_and_runs_nothing(run, tmp_path, token):
    _, gcs = run
    home, target = tmp_path / "home", tmp_path / "written-by-the-stranger"
    home.mkdir()
    # A clean environment and home; a refused driver gives up after 3 tries (Ray's default is 20, one a second).
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "RAY_NUM_REDIS_GET_RETRIES": "3"}
    if gcs.startswith("127.0.0.1:"):
        env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # or Ray turns 127.0.0.1 into the machine's address
    if token:
        env |= {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    stranger = subprocess.run([sys.executable, "-c", STRANGER, gcs, str(target)], env=env, cwd=home,
                              capture_output=True, text=True, timeout=240)  # fmt: skip
    assert stranger.returncode != 0, "the stranger's driver was let in"
    assert "Authentication token is missing or incorrect" in stranger.stderr, stranger.stderr[-3000:]
    assert not target.exists()


def test_a_run_that_ends_normally_exits_0_and_leaves_no_ray_process_behind(run):
    driver, _ = run
    processes = ray_processes(driver)
    driver.stdin.close()
    assert driver.wait(timeout=120) == 0
    _, alive = psutil.wait_procs(processes, timeout=15)
    assert [f"{p.pid} {p.name()}" for p in alive] == []


def test_a_run_killed_with_kill_9_leaves_no_ray_process_behind():
    driver, _ = start_driver()
    processes = ray_processes(driver)
    assert len(processes) >= 5, processes
    os.kill(driver.pid, signal.SIGKILL)  # the driver only, as the OOM killer would; not its process group
    driver.wait()
    _, alive = psutil.wait_procs(processes, timeout=15)
    left = [f"{p.pid} {p.name()}" for p in alive]
    for proc in alive:  # clean up after a failure
        proc.kill()
    assert left == [], "still running 15 s after the driver was killed"
