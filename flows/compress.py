"""Flow of stage `compress`."""

from prefect import flow

from bard_core.config import BardConfig
from storage.artifacts import Manifest
from tasks.compress import compress_task


@flow(name="compress")
def compress_flow(config: BardConfig, refresh: bool = False) -> Manifest:
    return compress_task(config, refresh)
