"""Stage retries (config `orchestration`) on a real Prefect task: a transient failure is retried and the run
goes on; bad input (a BardError) fails at once, since the same input would fail the same way; so does a full disk."""

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from prefect import flow, task

from bard_core.config import BardConfig
from bard_core.errors import BardError
from bard_core.training.grpo_trl import TRLGRPORecipe
from bard_core.training.sft_trl import TRLSFTRecipe
from tasks.ray_runtime import run_recipe_task, run_shards
from tasks.retries import DiskFull, with_retries

# Prefect's API for the flows run in this process, started as `bard run` starts it
pytestmark = pytest.mark.usefixtures("prefect_api")

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


# ---------------------------------------------------------------- a full disk, and the user's errors in a recipe

FULL = Path("/dev/full")  # the kernel's always-full device: writing to it is a real ENOSPC, no root needed
needs_dev_full = pytest.mark.skipif(not FULL.is_char_device(), reason="no /dev/full on this system")


def write_a_shard(_spec) -> None:
    with open(FULL, "w") as f:
        f.write("a shard")


@task
def write_on_a_full_disk(in_ray: bool) -> None:
    attempts.append("full disk")
    if in_ray:  # as a stage's shards are written: in Ray workers, whose errors Ray wraps
        run_shards(write_a_shard, [0], label="test")
    else:
        write_a_shard(0)


@flow
def full_disk_stage(config: BardConfig, in_ray: bool) -> None:
    return with_retries(write_on_a_full_disk, config)(in_ray)


@needs_dev_full
@pytest.mark.parametrize("in_ray", [False, True])
def test_a_full_disk_is_reported_once_naming_the_place_and_not_retried(tmp_path, in_ray, request):
    if in_ray:
        request.getfixturevalue("ray_local")
    config = BardConfig.model_validate({"home": str(tmp_path), "orchestration": {"retries": 3, "retry_delay_s": 0}})
    with pytest.raises(DiskFull) as err:
        full_disk_stage(config, in_ray)
    assert attempts == ["full disk"]
    message = str(err.value)
    assert message.startswith(f"disk full: no space left on the device writing under {tmp_path} (")
    assert "MiB free at" in message and "Traceback" not in message and "ray::" not in message


def sft_rows(path: Path, split: str) -> str:
    messages = [{"role": "user", "content": "What is 1 plus 1?"}], [{"role": "assistant", "content": "2"}]
    pq.write_table(pa.table({"split": [split], "kind": ["budget"], "prompt": [messages[0]], "completion": [messages[1]],
                             "answer": ["2"], "budget": [64]}), path)  # fmt: skip
    return str(path)


@task
def train_sft(config: BardConfig, data: str, out: str) -> dict:
    attempts.append("sft")
    return run_recipe_task(config.ray, "sft", TRLSFTRecipe, config, [data], out=out)


@flow
def sft_stage(config: BardConfig, data: str, out: str) -> dict:
    return with_retries(train_sft, config)(config, data, out)


def test_a_bad_config_met_inside_a_recipe_is_not_retried(tmp_path, ray_local):
    """The recipe runs in a Ray worker: its BardError (was a ValueError, retried) reaches the flow as one message."""
    config = BardConfig.model_validate({"orchestration": {"retries": 2, "retry_delay_s": 0}})
    with pytest.raises(BardError) as err:
        sft_stage(config, sft_rows(tmp_path / "rows.parquet", "validation"), str(tmp_path / "out"))
    assert attempts == ["sft"]
    assert str(err.value).startswith("sft: no train rows of kind ['budget', 'standard']")
    assert "Traceback" not in str(err.value) and "ray::" not in str(err.value)


def test_the_recipes_refuse_bad_settings_before_loading_a_model(tmp_path):
    """No model directory exists here: each check fails first, as a BardError naming the setting."""
    rows = sft_rows(tmp_path / "rows.parquet", "train")
    config = BardConfig.model_validate({"sft": {"lr_scheduler": "bogus"}, "grpo": {"early_stopping_patience": 2}})
    with pytest.raises(BardError, match="sft: the trainer refuses these settings: bogus is not a valid SchedulerType"):
        TRLSFTRecipe(config, [rows], tmp_path / "sft").setup()
    with pytest.raises(BardError, match="grpo.early_stopping_patience: no validation prompts"):
        TRLGRPORecipe(config, str(tmp_path / "no-model"), [rows], tmp_path / "grpo").setup()
    no_train = sft_rows(tmp_path / "validation_only.parquet", "validation")
    with pytest.raises(BardError, match="grpo: no train prompt with a budget"):
        TRLGRPORecipe(BardConfig(), str(tmp_path / "no-model"), [no_train], tmp_path / "grpo").setup()
