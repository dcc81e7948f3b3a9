"""Flow of stage `teacher`."""

from prefect import flow

from bard_core.config import BardConfig
from storage.artifacts import Manifest
from tasks.teacher import teacher_task
from tasks.retries import with_retries


@flow(name="teacher")
def teacher_flow(config: BardConfig, refresh: bool = False) -> Manifest:
    return with_retries(teacher_task, config)(config, refresh)
