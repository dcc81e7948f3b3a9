"""Retries of a stage's Prefect task after a transient failure (config `orchestration`). A stage resumes from
what it committed, so a retry redoes only the unfinished work. Bad input (a BardError) is never retried:
the same input would fail the same way."""

from __future__ import annotations

from prefect import Task

from bard_core.config import BardConfig
from bard_core.errors import BardError


def is_transient(task, task_run, state) -> bool:
    """Prefect's retry condition: retry unless the stage failed on bad input."""
    try:
        state.result()
    except BardError:
        return False
    except Exception:
        return True
    return False


def with_retries(stage_task: Task, config: BardConfig) -> Task:
    cfg = config.orchestration
    return stage_task.with_options(
        retries=cfg.retries, retry_delay_seconds=cfg.retry_delay_s, retry_condition_fn=is_transient
    )
