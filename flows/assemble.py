"""Flow of stage `assemble`."""

from prefect import flow

from bard_core.config import BardConfig
from storage.artifacts import Manifest
from tasks.assemble import assemble_task
from tasks.retries import with_retries


@flow(name="assemble")
def assemble_flow(config: BardConfig, refresh: bool = False) -> Manifest:
    return with_retries(assemble_task, config)(config, refresh)
