"""Work that must happen when this process ends, however it ends (kill -9 included): a few lines of Python run by a
separate process in its own session (so a kill of our process group spares it). It waits for its stdin to close:
this process holds the pipe's other end, and the kernel closes it when this process is gone."""

from __future__ import annotations

import subprocess
import sys

# The watchdogs' pipes: closing one (as garbage collection would) sets its watchdog off, so they live as long as we do.
_watchdogs: list[subprocess.Popen] = []


def when_this_process_ends(code: str, *args: str) -> None:
    """Run `code` (with `args` as sys.argv[1:]) once this process has ended."""
    script = "import sys\nsys.stdin.buffer.read()\n" + code
    _watchdogs.append(subprocess.Popen([sys.executable, "-S", "-c", script, *args], stdin=subprocess.PIPE,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))  # fmt: skip
