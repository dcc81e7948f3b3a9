"""Flow of stage `problems`."""

from prefect import flow

from bard_core.config import BardConfig
from storage.artifacts import Manifest
from tasks.problems import problems_task
from tasks.retries import with_retries


@flow(name="problems")
def problems_flow(config: BardConfig, refresh: bool = False) -> Manifest:
    return with_retries(problems_task, config)(config, refresh)
