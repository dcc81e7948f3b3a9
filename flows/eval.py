"""Flow of stage `eval`."""

from prefect import flow

from bard_core.config import BardConfig
from storage.artifacts import Manifest
from tasks.eval import eval_task


@flow(name="eval")
def eval_flow(config: BardConfig, refresh: bool = False) -> Manifest:
    return eval_task(config, refresh)
