"""Flow of stage `report`."""

from prefect import flow

from bard_core.config import BardConfig
from storage.artifacts import Manifest
from tasks.report import report_task


@flow(name="report")
def report_flow(config: BardConfig, refresh: bool = False) -> Manifest:
    return report_task(config, refresh)
