"""`bard ui` on any port serves a UI that calls its own API, and stops its Prefect server when it is stopped with
SIGTERM (a service manager, `kill`), as on Ctrl-C."""

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request

import psutil

from tests.conftest import BARD, ROOT, free_port


def test_bard_ui_on_any_port_calls_its_own_api_and_sigterm_stops_its_server(tmp_path):
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
        # The UI asks the server where its API is: its own port, not the default 4200
        settings = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/ui-settings", timeout=10))
        assert settings["api_url"] == f"http://127.0.0.1:{port}/api"

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
