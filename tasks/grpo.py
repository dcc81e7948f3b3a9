"""Stage `grpo`: GRPO from the SFT model on the assembled RL prompts in a Ray task (or an OpenRLHF job), commit
the model directory as the artifact."""

from __future__ import annotations

from pathlib import Path

from bard_core.config import BardConfig
from storage.artifacts import Manifest
from tasks import sft
from tasks.build import StageRun
from tasks.ray_job import secret_env_values
from tasks.ray_runtime import plural, recipe_task_line, run_recipe_task

NAME = "grpo"


def key_config(config: BardConfig) -> dict:
    """GRPO's own settings and everything the reward depends on."""
    local = config.grpo.backend != "openrlhf"
    return {
        "grpo": config.grpo.model_dump(mode="json", exclude={"report_to"} | ({"openrlhf"} if local else set())),
        "reward": config.reward.model_dump(mode="json"),
        "budget": config.budget.keyed(),
        "verify": config.verify.model_dump(mode="json"),
    }


def check(config: BardConfig) -> None:
    sft.check(config)
    if config.grpo.backend == "openrlhf":
        secret_env_values(config.ray)  # a ray.secret_env variable missing from the environment fails before any work


def run(job: StageRun) -> tuple[dict[str, int], dict]:
    """Train (or resume) the GRPO model from the SFT model on the assembled RL prompts."""
    config, path = job.config, job.path
    data, start = job.inputs["assemble"], job.inputs["sft"]
    if config.grpo.backend == "openrlhf":
        return {}, _openrlhf(config, data.files("rl_prompts"), path, Path(start.path))
    from bard_core.training.grpo_trl import TRLGRPORecipe

    model_dir = str(Path(start.path) / "model")
    metrics = run_recipe_task(config.ray, NAME, TRLGRPORecipe, config, model_dir, data.files("rl_prompts"),
                              out=str(path), on_progress=job.on_progress)
    steps = metrics["per_step"]
    stats = {
        "steps": metrics["steps"], "resumed_from": metrics["resumed_from"], "prefilter": metrics["prefilter"],
        "first_reward": steps[0]["reward"] if steps else None, "last_reward": steps[-1]["reward"] if steps else None,
        "train_runtime_s": metrics["train"].get("train_runtime"), "model": str(path / "model"),
    }  # fmt: skip
    return {}, stats


def command(config: BardConfig, out: Path, inputs: dict[str, Path]) -> str:
    """The OpenRLHF GRPO job's command line, writing under the artifact directory `out`, from the SFT model."""
    from bard_core.training import openrlhf

    files = out / "openrlhf"
    return openrlhf.grpo_entrypoint(config, str(inputs["sft"] / "model"), str(files / "rl_prompts.parquet"),
                                    str(files / "reward_func.py"), out)  # fmt: skip


def _openrlhf(config: BardConfig, files: list[str], path: Path, sft_dir: Path) -> dict:
    """The prompt file and the reward file, then the job. The reward file counts budget tokens with the SFT
    model's tokenizer (BARD_REWARD_TOKENIZER in the job's environment), as the trl backend does."""
    from bard_core.reward_file import ENV_TOKENIZER, write_reward_file
    from bard_core.training import openrlhf
    from tasks.ray_job import run_openrlhf

    rows = openrlhf.write_rl_prompts(files, path / "openrlhf" / "rl_prompts.parquet", config)
    write_reward_file(config, path / "openrlhf" / "reward_func.py")
    job = run_openrlhf(config.ray, NAME, command(config, path, {"sft": sft_dir}), path, 0,
                       {ENV_TOKENIZER: str(sft_dir / "model")})
    return {"backend": "openrlhf", "prompt_rows": rows, **job, "model": str(path / "model")}


def runs_on(config: BardConfig, inputs: dict[str, Path]) -> list[str]:
    if config.grpo.backend != "openrlhf":
        return [recipe_task_line(config.ray, NAME, "the sft model")]
    orl, models = config.grpo.openrlhf, "actor and reference" if config.grpo.beta > 0 else "actor"  # beta 0: no reference
    per_model = orl.nodes * orl.gpus_per_node
    engines = f"{plural(orl.vllm_engines, 'vLLM engine')} x tensor parallel {orl.vllm_tensor_parallel_size}"
    placed = f"openrlhf Ray job from the sft model: {models} on {plural(orl.nodes, 'node')} x {plural(orl.gpus_per_node, 'GPU')}, {engines}"
    if orl.colocate_all:
        return [f"{placed}, all colocated on the same {plural(per_model, 'GPU')}"]
    total = per_model * (2 if config.grpo.beta > 0 else 1) + orl.vllm_engines * orl.vllm_tensor_parallel_size
    return [f"{placed}, each on its own: {plural(total, 'GPU')}"]


def summary(manifest: Manifest) -> list[dict]:
    return [manifest.stats]
