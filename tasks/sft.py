"""Prefect task of stage `sft`: train the student on the assembled SFT data in a Ray task, commit the model
directory as an artifact, return its manifest."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NONE

from bard_core.config import BardConfig
from bard_core.errors import BardError
from storage.artifacts import ArtifactStore, Manifest, artifact_key
from tasks import assemble
from tasks.build import build_artifact
from tasks.publish import publish_summary
from tasks.ray_runtime import run_recipe

NAME = "sft"
VERSION = 1


def key_config(config: BardConfig) -> dict:
    return {
        "student": config.student.model_dump(mode="json"),
        "sft": config.sft.model_dump(mode="json", exclude={"report_to"}),
    }


def inputs(config: BardConfig) -> dict[str, str]:
    return {"assemble": assemble.key(config)}


def key(config: BardConfig) -> str:
    return artifact_key(NAME, VERSION, key_config(config), inputs(config))


def check(config: BardConfig) -> None:
    if config.student.model is not None and not Path(config.student.model).is_dir():
        raise BardError(f"student.model: {config.student.model} is not a model directory")


def build(config: BardConfig, refresh: bool = False, flow_run_id: str | None = None) -> Manifest:
    """Train (or reuse, or resume from the last checkpoint) the SFT model from the finished `assemble` artifact."""
    check(config)
    data = ArtifactStore(config.home).manifest("assemble", assemble.key(config))
    if data is None:
        raise BardError("sft: the assemble artifact of this config is not built yet: run `bard run --from assemble`")

    def make(path: Path) -> tuple[dict[str, int], dict]:
        from bard_core.training.sft_trl import TRLSFTRecipe

        metrics = run_recipe(config.ray, TRLSFTRecipe, config, data.files("sft_dataset"), str(path))
        curve = metrics["loss_curve"]
        stats = {
            "steps": metrics["steps"], "resumed_from": metrics["resumed_from"],
            "first_loss": curve[0]["loss"] if curve else None, "last_loss": curve[-1]["loss"] if curve else None,
            "train_runtime_s": metrics["train"].get("train_runtime"), "model": str(path / "model"),
        }  # fmt: skip
        return {}, stats

    return build_artifact(config, NAME, VERSION, key(config), key_config(config), inputs(config), make, refresh, flow_run_id)


@task(name="sft", cache_policy=NONE)
def sft_task(config: BardConfig, refresh: bool = False) -> Manifest:
    from prefect.runtime import flow_run

    manifest = build(config, refresh, flow_run_id=flow_run.id)
    publish_summary(manifest, [manifest.stats])
    return manifest
