"""Flow of stage `report`."""

from prefect import flow

from bard_core.config import BardConfig
from storage.artifacts import Manifest
from tasks.report import report_task
from tasks.retries import with_retries


@flow(name="report")
def report_flow(config: BardConfig, refresh: bool = False) -> Manifest:
    return with_retries(report_task, config)(config, refresh)
