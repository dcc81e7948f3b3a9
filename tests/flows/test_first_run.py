"""A newcomer's first `bard run`: a machine where Prefect never ran (fresh HOME, no PREFECT_* variables), and the
Prefect temporary API server's life: it starts with time for a first start, fails with one clear message, and ends
with the `bard` process that started it, even after kill -9."""

import os
import signal
import subprocess
import time

import psutil

from tests.conftest import BARD, DATA

CONFIG = f"problems:\n  shard_rows: 20\n  sources:\n    - {{kind: aime, path: '{DATA}/aime24.jsonl', split: test}}\n"


def fresh_machine_env(tmp_path) -> dict[str, str]:
    """What a new user's shell has: a PATH and an empty HOME; no Prefect settings (so no start-up timeout either)."""
    (tmp_path / "user-home").mkdir(exist_ok=True)
    return {"PATH": os.environ["PATH"], "HOME": str(tmp_path / "user-home"), "LANG": "C.UTF-8"}


def test_first_run_on_a_machine_where_prefect_never_ran(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG)
    env = fresh_machine_env(tmp_path)
    run = subprocess.run([BARD, "run", "--stages", "problems", "--config", str(config), "--home", str(tmp_path / "bh")],
                         capture_output=True, text=True, env=env, timeout=400)  # fmt: skip
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    assert "Preparing Prefect's database" in out  # it was a first start
    assert (tmp_path / "user-home" / ".prefect" / "prefect.db").exists()
    assert "Traceback" not in out
    assert list((tmp_path / "bh" / "artifacts" / "problems").glob("*/manifest.json"))


def test_a_server_that_cannot_start_is_one_clear_message(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG)
    not_a_folder = tmp_path / "prefect-home"
    not_a_folder.write_text("")  # Prefect cannot create its database here
    env = {**fresh_machine_env(tmp_path), "PREFECT_HOME": str(not_a_folder)}
    started = time.monotonic()
    run = subprocess.run([BARD, "run", "--stages", "problems", "--config", str(config), "--home", str(tmp_path / "bh")],
                         capture_output=True, text=True, env=env, timeout=400)  # fmt: skip
    assert run.returncode == 1
    assert time.monotonic() - started < 100, "reported when the server exited, not after a start-up timeout"
    said = " ".join(run.stderr.split())  # the terminal's line breaks aside
    assert "error: Prefect's temporary API server did not start" in said
    assert "unable to open database file" in said  # the cause, from the server's log
    assert "PREFECT_HOME" in said and "bard ui" in said  # what to do
    assert "Traceback" not in run.stdout + run.stderr
    assert (tmp_path / "bh" / "logs" / "prefect-server.log").exists()


def test_prefect_server_ends_with_a_killed_bard(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG + "    - {kind: reasoning_gym, name: chain_sum, size: 20000, seed: 1}\n")
    env = {**os.environ}
    env.pop("PREFECT_API_URL", None)
    bard = subprocess.Popen([BARD, "run", "--stages", "problems", "--config", str(config), "--home", str(tmp_path / "bh")],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        server = None
        while server is None:
            assert bard.poll() is None, "bard ended before its server could be found"
            assert time.monotonic() < deadline, "no Prefect server started"
            children = psutil.Process(bard.pid).children(recursive=True)
            server = next((p for p in children if "uvicorn" in " ".join(_cmdline(p))), None)
            time.sleep(0.2)
        while not list((tmp_path / "bh" / "artifacts" / "problems").glob("*/config.json")):  # the stage is running
            assert bard.poll() is None and time.monotonic() < deadline, "the problems stage never started"
            time.sleep(0.2)
        os.kill(bard.pid, signal.SIGKILL)  # bard alone: no cleanup of its own runs
        bard.wait()
        gone, alive = psutil.wait_procs([server], timeout=30)
        assert not alive, "the Prefect server outlived the bard that started it"
    finally:
        if bard.poll() is None:
            bard.kill()


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return []
