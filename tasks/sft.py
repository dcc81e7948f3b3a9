"""Stage `sft`: train the student on the assembled SFT data in a Ray task (or an OpenRLHF job), commit the
model directory as the artifact."""

from __future__ import annotations

from pathlib import Path

from bard_core import tokenizers
from bard_core.config import BardConfig
from bard_core.errors import BardError
from bard_core.files import model_dir_fingerprint
from bard_core.model_import import check_local_model
from storage.artifacts import Manifest
from tasks.build import StageRun, keyed_when_on
from tasks.ray_job import secret_env_values
from tasks.ray_runtime import plural, recipe_task_line, run_recipe_task

NAME = "sft"


def key_config(config: BardConfig) -> dict:
    """The student and the SFT settings; the cluster settings only when the cluster trains."""
    local = config.sft.backend != "openrlhf"
    found = {
        "student": config.student.model_dump(mode="json", exclude=keyed_when_on(config.student, "chat_template")),
        "sft": config.sft.model_dump(mode="json", exclude={"report_to"} | ({"openrlhf"} if local else set())
                                     | keyed_when_on(config.sft, "group_by_length", "lora")),
        "tokenizer": tokenizers.fingerprint(config.student.tokenizer or config.student.model),
    }
    if config.student.model:  # a base model's weights replaced in place must not pass for the cached ones
        found["student_files"] = model_dir_fingerprint(config.student.model)
    return found


def check(config: BardConfig) -> None:
    if config.student.model is not None and not Path(config.student.model).is_dir():
        check_local_model("student.model", config.student.model)  # a path: says how to make one
        raise BardError(f"student.model: {config.student.model} is not a model directory")
    if config.sft.backend == "openrlhf":
        command(config, Path(config.home))  # settings OpenRLHF cannot take fail here, before any work
        secret_env_values(config.ray)  # so does a ray.secret_env variable missing from the environment


def run(job: StageRun) -> tuple[dict[str, int], dict]:
    """Train (or resume from the last checkpoint) the student on the assembled SFT data."""
    config, path, data = job.config, job.path, job.inputs["assemble"]
    if config.sft.backend == "openrlhf":
        return {}, _openrlhf(config, data.files("sft_dataset"), path)
    from bard_core.training.sft_trl import TRLSFTRecipe

    metrics = run_recipe_task(config.ray, NAME, TRLSFTRecipe, config, data.files("sft_dataset"), out=str(path),
                              on_progress=job.on_progress)
    curve = metrics["loss_curve"]
    stats = {
        "steps": metrics["steps"], "resumed_from": metrics["resumed_from"],
        "first_loss": curve[0]["loss"] if curve else None, "last_loss": curve[-1]["loss"] if curve else None,
        "train_runtime_s": metrics["train"].get("train_runtime"), "model": str(path / "model"),
    }  # fmt: skip
    return {}, stats


def command(config: BardConfig, out: Path, inputs: dict[str, Path] | None = None) -> str:
    """The OpenRLHF SFT job's command line, writing under the artifact directory `out`."""
    from bard_core.training import openrlhf

    return openrlhf.sft_entrypoint(config, openrlhf.student_dir(out), str(out / "openrlhf" / "sft.parquet"), out)


def _openrlhf(config: BardConfig, files: list[str], path: Path) -> dict:
    import pyarrow.parquet as pq

    from bard_core.training import openrlhf
    from tasks.ray_job import run_openrlhf

    rows = openrlhf.write_sft_data(files, path / "openrlhf" / "sft.parquet", config.sft.kinds)
    first = next(pq.ParquetFile(path / "openrlhf" / "sft.parquet").iter_batches(batch_size=1)).to_pylist()[0]
    openrlhf.write_student(config, path, first)
    job = run_openrlhf(config.ray, NAME, command(config, path), path, config.sft.openrlhf.gpus, {})
    return {"backend": "openrlhf", "train_rows": rows, **job, "model": str(path / "model")}


def runs_on(config: BardConfig, inputs: dict[str, Path]) -> list[str]:
    start = config.student.model or "a student built from student.architecture"
    if config.sft.backend == "openrlhf":
        orl = config.sft.openrlhf
        return [f"openrlhf Ray job from {start}: deepspeed (ZeRO-{orl.zero_stage}) on {plural(orl.gpus, 'GPU')} of one node"]
    return [recipe_task_line(config.ray, NAME, start)]


def summary(manifest: Manifest) -> list[dict]:
    return [manifest.stats]
