"""Flow of stage `eval`."""

from prefect import flow

from bard_core.config import BardConfig
from storage.artifacts import Manifest
from tasks.eval import eval_task
from tasks.retries import with_retries


@flow(name="eval")
def eval_flow(config: BardConfig, refresh: bool = False) -> Manifest:
    return with_retries(eval_task, config)(config, refresh)
