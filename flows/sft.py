"""Flow of stage `sft`."""

from prefect import flow

from bard_core.config import BardConfig
from storage.artifacts import Manifest
from tasks.sft import sft_task
from tasks.retries import with_retries


@flow(name="sft")
def sft_flow(config: BardConfig, refresh: bool = False) -> Manifest:
    return with_retries(sft_task, config)(config, refresh)
