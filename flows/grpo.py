"""Flow of stage `grpo`."""

from prefect import flow

from bard_core.config import BardConfig
from storage.artifacts import Manifest
from tasks.grpo import grpo_task


@flow(name="grpo")
def grpo_flow(config: BardConfig, refresh: bool = False) -> Manifest:
    return grpo_task(config, refresh)
