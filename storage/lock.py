"""One writer per artifact: an advisory file lock that the OS releases if its holder dies (even kill -9)."""

from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from bard_core.errors import BardError

POLL_S = 0.2


@contextmanager
def artifact_lock(home: Path, stage: str, key: str, timeout_s: float) -> Iterator[None]:
    """Hold the lock of artifact `stage/key`; wait up to `timeout_s` for another writer, then fail clearly."""
    lock_dir = home / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    path = lock_dir / f"{stage}-{key}.lock"
    with open(path, "a+") as f:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    f.seek(0)
                    holder = f.read().strip() or "unknown"
                    raise BardError(
                        f"{stage}: artifact {key} is being written by another process (pid {holder}, lock {path}); "
                        f"waited {timeout_s:g}s (lock_timeout_s). Run again when it has finished."
                    ) from None
                time.sleep(POLL_S)
        try:
            f.seek(0)
            f.truncate()
            f.write(str(os.getpid()))
            f.flush()
            yield
        finally:
            f.seek(0)
            f.truncate()
            fcntl.flock(f, fcntl.LOCK_UN)
