"""The Prefect API a command-line run talks to: the server PREFECT_API_URL names, or Prefect's temporary one.

Prefect starts its temporary API server on the first call that needs one and gives up after 20 s. On a machine where
Prefect never ran, that first start also creates and migrates Prefect's database: 15-25 s on 2 cores, more under
load, so a newcomer's first `bard run` failed. bard starts the temporary server itself, before any flow, with time
for a first start, and says what to do when it fails. Prefect's own calls then find it running (one per process).
Its output goes to a log file beside the artifacts, so a failed start is one message with the log's last line, not the
server's traceback. A watchdog ends the server when bard dies without cleaning up (kill -9), instead of leaving it up
forever.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import sys
import time
import urllib.request
from pathlib import Path

from bard_core.errors import BardError
from bard_core.watchdog import when_this_process_ends

# A first start (database creation and migration) took 15-25 s on this project's 2-core machine; 120 s leaves room
# for a loaded machine. A server that exits early is reported at once, not after the timeout.
STARTUP_TIMEOUT_S = 120

# Run once bard has ended (bard_core.watchdog): stops the server (pid argv[1]) if bard could not (kill -9).
_STOP_SERVER = """
import os, signal, time
server = int(sys.argv[1])
def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
if alive(server):
    os.kill(server, signal.SIGTERM)
    for _ in range(20):
        time.sleep(0.5)
        if not alive(server):
            break
    else:
        os.kill(server, signal.SIGKILL)
"""


def ensure_prefect_api(log_dir: Path) -> None:
    """Make sure the flow runs of this process have an API: the configured server, or the temporary one (its output
    in `log_dir`/prefect-server.log)."""
    if check_prefect_server() is None:
        start_temporary_server(log_dir / "prefect-server.log")


def check_prefect_server() -> str | None:
    """The URL of the server PREFECT_API_URL names, checked to answer (fail at once with what to do, not after
    Prefect's retries); None when it is not set."""
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        return None
    try:
        urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=10).read()
    except OSError as err:
        raise BardError(f"the Prefect server at PREFECT_API_URL={url} does not answer ({err}): start it (`bard ui`) "
                        "or unset PREFECT_API_URL to run on Prefect's ephemeral API") from None  # fmt: skip
    return url


def start_temporary_server(log: Path, timeout_s: float = STARTUP_TIMEOUT_S) -> str:
    """Start Prefect's temporary API server for this process, once, and return its API URL. Prefect's own start
    (`SubprocessASGIServer.start`) is not used: it cannot be given our log file, and it restarts a server that fails
    at start-up (uvicorn's exit code 3 reads to it as "port taken") until its timeout."""
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_HOME

    server = SubprocessASGIServer()  # the instance Prefect's own calls use
    if server.running:
        return server.api_url
    home = PREFECT_HOME.value()
    with contextlib.suppress(OSError):  # where it cannot be made, the server says why in its log
        home.mkdir(parents=True, exist_ok=True)
    if not (home / "prefect.db").exists():
        print(f"Preparing Prefect's database in {home} (the first run on this machine takes up to a minute)",
              file=sys.stderr, flush=True)  # fmt: skip
    log.parent.mkdir(parents=True, exist_ok=True)
    server.port = server.find_available_port()
    with _output_to(log):
        server.server_process = server._run_uvicorn_command()
    server.running = True
    atexit.register(server.stop)
    when_this_process_ends(_STOP_SERVER, str(server.server_process.pid))
    started = time.monotonic()
    while True:
        if server.server_process.poll() is not None:
            code = server.server_process.returncode
            server.stop()
            raise _failed(f"it exited with code {code} after {time.monotonic() - started:.0f} s", log, home)
        try:
            urllib.request.urlopen(f"{server.api_url}/health", timeout=5).read()
            break
        except OSError:
            if time.monotonic() - started > timeout_s:
                server.stop()
                raise _failed(f"it did not answer within {timeout_s:.0f} s", log, home) from None
            time.sleep(0.2)
    return server.api_url


@contextlib.contextmanager
def _output_to(log: Path):
    """Point this process's stdout and stderr at `log` while a child is started, so that the child writes there."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with log.open("ab") as file:
        os.dup2(file.fileno(), 1)
        os.dup2(file.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


def _failed(reason: str, log: Path, home: Path) -> BardError:
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if re.match(r"[\w.]+(Error|Exception)\b.*:", line)]  # a traceback's last line
    said = f"\nFrom its log ({log}): {(errors or lines)[-1]}" if lines else ""
    return BardError(
        f"Prefect's temporary API server did not start: {reason}.{said}\n"
        "What to do: run the command again (a start after the first is faster); if it fails again, check that "
        f"{home} (PREFECT_HOME) is a writable folder with free space, or start a server in another terminal with "
        "`bard ui` and `export PREFECT_API_URL=http://127.0.0.1:4200/api` before running bard."
    )
