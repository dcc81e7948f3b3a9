"""Prefect task of stage `grpo`: GRPO from the SFT model on the assembled RL prompts in a Ray task, commit the
model directory as an artifact, return its manifest."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NONE

from bard_core.config import BardConfig
from bard_core.errors import BardError
from storage.artifacts import ArtifactStore, Manifest, artifact_key
from tasks import assemble, sft
from tasks.build import build_artifact
from tasks.publish import progress_reporter, publish_summary
from tasks.ray_job import secret_env_values
from tasks.ray_runtime import run_recipe_task

NAME = "grpo"
# Part of every artifact key: bumped when what the stage writes changes (tests/tasks/test_stage_versions.py pins it).
VERSION = 1


def key_config(config: BardConfig) -> dict:
    """GRPO's own settings and everything the reward depends on."""
    local = config.grpo.backend != "openrlhf"
    return {
        "grpo": config.grpo.model_dump(mode="json", exclude={"report_to"} | ({"openrlhf"} if local else set())),
        "reward": config.reward.model_dump(mode="json"),
        "budget": config.budget.model_dump(mode="json"),
        "verify": config.verify.model_dump(mode="json"),
    }


def inputs(config: BardConfig) -> dict[str, str]:
    return {"sft": sft.key(config), "assemble": assemble.key(config)}


def key(config: BardConfig) -> str:
    return artifact_key(NAME, VERSION, key_config(config), inputs(config))


def check(config: BardConfig) -> None:
    sft.check(config)
    if config.grpo.backend == "openrlhf":
        secret_env_values(config.ray)  # a ray.secret_env variable missing from the environment fails before any work


def build(config: BardConfig, refresh: bool = False, flow_run_id: str | None = None, on_progress=None) -> Manifest:
    """Train (or reuse, or resume) the GRPO model from the finished `sft` and `assemble` artifacts."""
    check(config)
    store = ArtifactStore(config.home)
    data, start = store.manifest("assemble", assemble.key(config)), store.manifest("sft", sft.key(config))
    if data is None or start is None:
        raise BardError("grpo: the sft artifact of this config is not built yet: run `bard run --from sft`")

    def make(path: Path) -> tuple[dict[str, int], dict]:
        if config.grpo.backend == "openrlhf":
            return {}, _openrlhf(config, data.files("rl_prompts"), path)
        from bard_core.training.grpo_trl import TRLGRPORecipe

        model_dir = str(Path(start.path) / "model")
        metrics = run_recipe_task(config.ray, NAME, TRLGRPORecipe, config, model_dir, data.files("rl_prompts"),
                                  out=str(path), on_progress=on_progress)
        steps = metrics["per_step"]
        stats = {
            "steps": metrics["steps"], "resumed_from": metrics["resumed_from"], "prefilter": metrics["prefilter"],
            "first_reward": steps[0]["reward"] if steps else None, "last_reward": steps[-1]["reward"] if steps else None,
            "train_runtime_s": metrics["train"].get("train_runtime"), "model": str(path / "model"),
        }  # fmt: skip
        return {}, stats

    return build_artifact(config, NAME, VERSION, key(config), key_config(config), inputs(config), make, refresh, flow_run_id)


def openrlhf_command(config: BardConfig, out: Path) -> str:
    from bard_core.training import openrlhf

    sft_model = ArtifactStore(config.home).artifact_dir("sft", sft.key(config)) / "model"
    files = out / "openrlhf"
    return openrlhf.grpo_entrypoint(config, str(sft_model), str(files / "rl_prompts.parquet"), str(files / "reward_func.py"), out)


def _openrlhf(config: BardConfig, files: list[str], path: Path) -> dict:
    """The prompt file and the reward file, then the job. The reward file counts budget tokens with the SFT
    model's tokenizer (BARD_REWARD_TOKENIZER in the job's environment), as the trl backend does."""
    from bard_core.reward_file import ENV_TOKENIZER, write_reward_file
    from bard_core.training import openrlhf
    from tasks.ray_job import run_openrlhf

    rows = openrlhf.write_rl_prompts(files, path / "openrlhf" / "rl_prompts.parquet", config)
    write_reward_file(config, path / "openrlhf" / "reward_func.py")
    sft_model = str(ArtifactStore(config.home).artifact_dir("sft", sft.key(config)) / "model")
    job = run_openrlhf(config.ray, NAME, openrlhf_command(config, path), path, 0, {ENV_TOKENIZER: sft_model})
    return {"backend": "openrlhf", "prompt_rows": rows, **job, "model": str(path / "model")}


@task(name="grpo", cache_policy=NONE)
def grpo_task(config: BardConfig, refresh: bool = False) -> Manifest:
    from prefect.runtime import flow_run

    manifest = build(config, refresh, flow_run_id=flow_run.id, on_progress=progress_reporter(NAME))
    publish_summary(manifest, [manifest.stats])
    return manifest
