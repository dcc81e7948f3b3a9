"""Flow of stage `teacher`."""

from prefect import flow

from bard_core.config import BardConfig
from storage.artifacts import Manifest
from tasks.teacher import teacher_task


@flow(name="teacher")
def teacher_flow(config: BardConfig, refresh: bool = False) -> Manifest:
    return teacher_task(config, refresh)
