"""Shared test set-up: real components, isolated state.

Prefect gets its own PREFECT_HOME (its ephemeral API keeps a SQLite file there) and Ray runs
locally; both are inherited by the CLI subprocesses that tests start.
"""

import os
import sys
import tempfile
from pathlib import Path

import pytest

from tests.bard_core.generation.local_models import build_tiny_model

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"  # small real files the tests read (AIME 2024/2025, copied from shared/data/eval)
BARD = str(Path(sys.executable).with_name("bard"))

os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="bard-prefect-"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# For the Ray heads that tests start with `ray start` (and their clients): no token, and no ~/.ray/auth_token written
# into the real home. bard's own local Ray ignores it and always turns token authentication on.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray for the whole test process (starting one costs seconds)."""
    import ray

    from bard_core.config import RayConfig
    from tasks.ray_runtime import ensure_ray

    ensure_ray(RayConfig(num_cpus=2))
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory):
    """Prefect's temporary API for tests that run Prefect tasks or flows in this process, started as `bard run` starts
    it (Prefect's own start gives up after 20 s, less than a first start with a fresh PREFECT_HOME can take)."""
    from prefect.server.api.server import SubprocessASGIServer

    from flows.prefect_api import start_temporary_server

    yield start_temporary_server(tmp_path_factory.mktemp("prefect-log") / "prefect-server.log")
    SubprocessASGIServer().stop()  # now, while pytest still captures its log line, rather than at exit


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    """A tiny Qwen3 model directory whose chat template opens the assistant turn plainly."""
    return str(build_tiny_model(tmp_path_factory.mktemp("tiny")))


@pytest.fixture(scope="session")
def tiny_think_model(tmp_path_factory) -> str:
    """The same model, but its chat template prefills "<think>\\n" as DeepSeek-R1's does."""
    return str(build_tiny_model(tmp_path_factory.mktemp("tiny-think"), think_prefill=True))


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (for servers the tests start)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kill_9_when(cmd: list[str], ready, timeout_s: float = 240.0) -> None:
    """Start `cmd` in its own process group, wait until `ready()` is true, then kill -9 the whole group.
    Fails if the command ends first or `ready` never comes."""
    import os
    import signal
    import subprocess
    import time

    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout_s
    while not ready():
        assert proc.poll() is None, "the command finished before it could be killed"
        assert time.monotonic() < deadline, f"not ready within {timeout_s} s"
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
