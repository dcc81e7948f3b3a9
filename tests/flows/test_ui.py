"""`bard ui` stops its Prefect server when it is stopped with SIGTERM (a service manager, `kill`), as on Ctrl-C."""

import os
import signal
import socket
import subprocess
import time

import psutil

from tests.conftest import BARD, ROOT, free_port


def test_sigterm_to_bard_ui_stops_its_prefect_server(tmp_path):
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home")}
    env.pop("PREFECT_API_URL", None)
    log = tmp_path / "ui.log"
    ui = subprocess.Popen([BARD, "ui", "--port", str(port)], stdout=log.open("w"), stderr=subprocess.STDOUT, env=env,
                          cwd=ROOT, start_new_session=True)  # fmt: skip
    server: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 240
        while f"Prefect UI: http://127.0.0.1:{port}" not in log.read_text():
            assert ui.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        server = psutil.Process(ui.pid).children(recursive=True)
        assert server, "bard ui started no server"

        os.kill(ui.pid, signal.SIGTERM)  # bard only, not its process group
        ui.wait(timeout=60)
        _, alive = psutil.wait_procs(server, timeout=30)
        assert alive == [], "the Prefect server outlived `bard ui`"
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still answers"
    finally:  # nothing left running after a failure
        for proc in server:
            if proc.is_running():
                proc.kill()
        if ui.poll() is None:
            os.killpg(ui.pid, signal.SIGKILL)
