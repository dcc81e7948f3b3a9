"""Flow of stage `compress`."""

from prefect import flow

from bard_core.config import BardConfig
from storage.artifacts import Manifest
from tasks.compress import compress_task
from tasks.retries import with_retries


@flow(name="compress")
def compress_flow(config: BardConfig, refresh: bool = False) -> Manifest:
    return with_retries(compress_task, config)(config, refresh)
