"""Stage retries (config `orchestration`) on a real Prefect task: a transient failure is retried and the run
goes on; bad input (a BardError) fails at once, since the same input would fail the same way."""

import pytest
from prefect import flow, task

from bard_core.config import BardConfig
from bard_core.errors import BardError
from tasks.retries import with_retries

attempts: list[str] = []


@task
def flaky(error: str) -> str:
    attempts.append(error)
    if len(attempts) == 1:
        raise OSError("worker lost") if error == "transient" else BardError("problems.jsonl, row 3: no answer")
    return "done"


@flow
def one_stage(config: BardConfig, error: str) -> str:
    return with_retries(flaky, config)(error)


@pytest.fixture(autouse=True)
def fresh():
    attempts.clear()


def test_a_transient_failure_is_retried_and_the_stage_goes_on():
    config = BardConfig.model_validate({"orchestration": {"retries": 1, "retry_delay_s": 0}})
    assert one_stage(config, "transient") == "done"
    assert attempts == ["transient", "transient"]


def test_bad_input_is_not_retried():
    config = BardConfig.model_validate({"orchestration": {"retries": 3, "retry_delay_s": 0}})
    with pytest.raises(BardError, match="row 3"):
        one_stage(config, "bad input")
    assert attempts == ["bad input"]


def test_no_retries_when_configured_so():
    config = BardConfig.model_validate({"orchestration": {"retries": 0}})
    with pytest.raises(OSError):
        one_stage(config, "transient")
    assert attempts == ["transient"]
