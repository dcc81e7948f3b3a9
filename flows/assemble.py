"""Flow of stage `assemble`."""

from prefect import flow

from bard_core.config import BardConfig
from storage.artifacts import Manifest
from tasks.assemble import assemble_task


@flow(name="assemble")
def assemble_flow(config: BardConfig, refresh: bool = False) -> Manifest:
    return assemble_task(config, refresh)
