"""Flow of stage `sft`."""

from prefect import flow

from bard_core.config import BardConfig
from storage.artifacts import Manifest
from tasks.sft import sft_task


@flow(name="sft")
def sft_flow(config: BardConfig, refresh: bool = False) -> Manifest:
    return sft_task(config, refresh)
