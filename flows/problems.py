"""Flow of stage `problems`."""

from prefect import flow

from bard_core.config import BardConfig
from storage.artifacts import Manifest
from tasks.problems import problems_task


@flow(name="problems")
def problems_flow(config: BardConfig, refresh: bool = False) -> Manifest:
    return problems_task(config, refresh)
