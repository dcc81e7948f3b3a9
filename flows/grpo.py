"""Flow of stage `grpo`."""

from prefect import flow

from bard_core.config import BardConfig
from storage.artifacts import Manifest
from tasks.grpo import grpo_task
from tasks.retries import with_retries


@flow(name="grpo")
def grpo_flow(config: BardConfig, refresh: bool = False) -> Manifest:
    return with_retries(grpo_task, config)(config, refresh)
