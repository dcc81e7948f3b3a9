"""Retries of a stage's Prefect task after a transient failure (config `orchestration`). A stage resumes from
what it committed, so a retry redoes only the unfinished work. Bad input (a BardError) is never retried:
the same input would fail the same way. Nor is a full disk: it stays full until someone frees space."""

from __future__ import annotations

import errno
import functools
import shutil
from pathlib import Path
from typing import Any, Callable

from prefect import Task

from bard_core.config import BardConfig
from bard_core.errors import BardError


class DiskFull(BardError):
    """No space left on a device while a stage wrote its output."""


def no_space(err: BaseException) -> OSError | None:
    """The ENOSPC error behind `err`, if that is what it is; Ray passes a worker's error on as `cause`."""
    for candidate in (err, getattr(err, "cause", None)):
        if isinstance(candidate, OSError) and candidate.errno == errno.ENOSPC:
            return candidate
    return None


def is_transient(task, task_run, state) -> bool:
    """Prefect's retry condition: retry unless the stage failed on bad input or a full disk."""
    try:
        state.result()
    except BardError:
        return False
    except Exception as err:
        return no_space(err) is None
    return False


def disk_full(err: OSError, home: str) -> DiskFull:
    """The one message a full disk gets: where it was writing and how much space is left there."""
    path = Path(err.filename or home)  # a write's error seldom names its file: then the artifact home
    where = next((p for p in (path, *path.parents) if p.exists()), Path("/"))  # a file not yet written has none
    free_mib = shutil.disk_usage(where).free / 2**20
    return DiskFull(f"disk full: no space left on the device writing {'' if err.filename else 'under '}{path} "
                    f"({free_mib:.0f} MiB free at {where}); free some space and run again: every finished shard "
                    "and artifact is kept")  # fmt: skip


def with_retries(stage_task: Task, config: BardConfig) -> Callable[..., Any]:
    """The stage task, retried on transient failures; its failure reaches the flow (and the CLI, which prints a
    BardError as one `error:` line) as a BardError where it is one: a full disk, or bad input met in a Ray worker
    (Ray wraps it with the worker's traceback)."""
    cfg = config.orchestration
    retried = stage_task.with_options(
        retries=cfg.retries, retry_delay_seconds=cfg.retry_delay_s, retry_condition_fn=is_transient
    )

    @functools.wraps(stage_task.fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return retried(*args, **kwargs)
        except BardError as err:  # from a Ray worker it comes wrapped, its text led by the worker's traceback
            cause = getattr(err, "cause", None)
            if isinstance(cause, BardError):
                raise cause from None
            raise
        except OSError as err:
            full = no_space(err)
            if full is None:
                raise
            raise disk_full(full, config.home) from None

    return run
