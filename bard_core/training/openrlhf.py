"""The `openrlhf` backend's inputs: the datasets OpenRLHF reads and its full command lines, from config.

OpenRLHF itself runs on a GPU cluster as a Ray job (`tasks/ray_job.py` submits it); nothing here imports
it. Flags are OpenRLHF 0.11's dotted names; tests check every one against 0.11.2's own argument parser.

Out directory of an `openrlhf` stage (under the artifact's directory, which the cluster must reach):
    openrlhf/sft.parquet | rl_prompts.parquet   what the job trains on
    openrlhf/reward_func.py                     the BARD reward (`--reward.remote_url`), GRPO only
    openrlhf/command.sh, runtime_env.json       what was submitted (less the ray.secret_env values)
    model/                                      the trained model (`--ckpt.output_dir`)
    tensorboard/                                the job's logs (`--logger.tensorboard_dir`)
    _parts/checkpoints/                         DeepSpeed checkpoints a resubmitted job resumes from
"""

from __future__ import annotations

import math
import os
import shlex
import shutil
from pathlib import Path

from bard_core.budget import Budget
from bard_core.config import BardConfig
from bard_core.errors import BardError

VERSION = "0.11.2"  # the OpenRLHF release whose flags these are
SFT_MODULE = "openrlhf.cli.train_sft"
GRPO_MODULE = "openrlhf.cli.train_ppo_ray"


def _common(out: Path, save_steps: int, logging_steps: int, seed: int, ds) -> list[str]:
    """Flags both trainers share: checkpoints (resumed from on resubmission), logs, DeepSpeed."""
    return [
        "--ckpt.output_dir", str(out / "model"), "--ckpt.path", str(out / "_parts" / "checkpoints"),
        "--ckpt.save_steps", str(save_steps), "--ckpt.load_enable",
        "--logger.logging_steps", str(logging_steps), "--logger.tensorboard_dir", str(out / "tensorboard"),
        "--train.seed", str(seed), "--ds.zero_stage", str(ds.zero_stage), "--ds.param_dtype", ds.param_dtype,
        "--ds.attn_implementation", ds.attn_implementation,
    ]  # fmt: skip


def sft_args(config: BardConfig, model_dir: str, dataset: str, out: Path) -> list[str]:
    """`openrlhf.cli.train_sft` flags: `sft` settings with per-device batch semantics kept (the global batch
    is batch_size x gradient_accumulation_steps x GPUs), loss on the completion only (OpenRLHF's default)."""
    cfg, orl = config.sft, config.sft.openrlhf
    if cfg.epochs != int(cfg.epochs):
        raise BardError(f"sft.epochs: OpenRLHF trains whole epochs (got {cfg.epochs})")
    if cfg.batch_size % orl.micro_batch_size:
        raise BardError(f"sft.batch_size {cfg.batch_size} is not a multiple of sft.openrlhf.micro_batch_size {orl.micro_batch_size}")
    global_batch = cfg.batch_size * cfg.gradient_accumulation_steps * orl.gpus
    args = [
        "--model.model_name_or_path", model_dir,
        "--data.dataset", dataset, "--data.input_key", "prompt", "--data.output_key", "completion",
        "--data.apply_chat_template", "--data.max_len", str(cfg.max_length),
        "--train.max_epochs", str(int(cfg.epochs)), "--train.batch_size", str(global_batch),
        "--train.micro_batch_size", str(orl.micro_batch_size),
        "--adam.lr", str(cfg.learning_rate), "--adam.weight_decay", str(cfg.weight_decay),
        "--lr_scheduler", cfg.lr_scheduler, "--lr_warmup_ratio", str(cfg.warmup_ratio),
        *_common(out, cfg.save_steps, cfg.logging_steps, cfg.seed, orl),
    ]  # fmt: skip
    # OpenRLHF hands its scheduler one setting of its own, cosine_with_min_lr's floor (--min_lr_ratio); any other
    # would be dropped, and a scheduler that needs one (warmup_stable_decay) would fail in the job, on the cluster.
    kwargs = dict(cfg.lr_scheduler_kwargs)
    if cfg.lr_scheduler in ("cosine_with_min_lr", "cosine_warmup_with_min_lr") and "min_lr_rate" in kwargs:
        args += ["--min_lr_ratio", str(kwargs.pop("min_lr_rate"))]
    if kwargs:
        raise BardError(f"sft.lr_scheduler_kwargs {kwargs}: OpenRLHF {VERSION} passes its scheduler no settings but "
                        "cosine_with_min_lr's min_lr_rate; choose a scheduler that needs none (cosine, linear, "
                        "constant_with_warmup, cosine_with_min_lr) or sft.backend: trl")  # fmt: skip
    if cfg.max_steps > 0:  # OpenRLHF has no step limit: cap the samples instead
        args += ["--data.max_samples", str(cfg.max_steps * global_batch)]
    if cfg.packing:
        args.append("--ds.packing_samples")
    if orl.gradient_checkpointing:
        args.append("--model.gradient_checkpointing_enable")
    return args + list(orl.extra_args)


def sft_entrypoint(config: BardConfig, model_dir: str, dataset: str, out: Path) -> str:
    """The job's shell command: DeepSpeed's launcher on the node the job lands on (it asks for all its GPUs)."""
    launcher = ["deepspeed", "--num_gpus", str(config.sft.openrlhf.gpus), "--module", SFT_MODULE]
    return shlex.join(launcher + sft_args(config, model_dir, dataset, out))


def grpo_args(config: BardConfig, model_dir: str, prompts: str, reward_file: str, out: Path) -> list[str]:
    """`openrlhf.cli.train_ppo_ray` flags for GRPO with the BARD reward file. One rollout of
    `prompts_per_step` x `num_generations` samples is one optimizer step; the prompt file holds exactly
    `max_steps` x `prompts_per_step` rows (see `rl_rows`), so one episode is `max_steps` steps."""
    cfg, orl = config.grpo, config.grpo.openrlhf
    new_tokens = Budget.from_config(config).completion_limit()
    args = [
        "--actor.model_name_or_path", model_dir, "--reward.remote_url", reward_file,
        "--data.prompt_dataset", prompts, "--data.input_key", "prompt", "--data.label_key", "label",
        "--data.apply_chat_template", "--data.max_len", str(orl.prompt_max_tokens + new_tokens),
        "--rollout.max_new_tokens", str(new_tokens),
        "--algo.advantage.estimator", orl.advantage_estimator,
        "--rollout.n_samples_per_prompt", str(cfg.num_generations), "--rollout.batch_size", str(cfg.prompts_per_step),
        "--train.batch_size", str(cfg.prompts_per_step * cfg.num_generations),
        "--rollout.micro_batch_size", str(orl.micro_rollout_batch_size),
        "--train.micro_batch_size", str(orl.micro_train_batch_size),
        "--rollout.temperature", str(cfg.temperature), "--rollout.top_p", "1.0",
        "--train.num_episodes", "1", "--train.max_epochs", "1", "--actor.adam.lr", str(cfg.learning_rate),
        "--actor.num_nodes", str(orl.nodes), "--actor.num_gpus_per_node", str(orl.gpus_per_node),
        "--ref.num_nodes", str(orl.nodes), "--ref.num_gpus_per_node", str(orl.gpus_per_node),
        "--vllm.num_engines", str(orl.vllm_engines), "--vllm.tensor_parallel_size", str(orl.vllm_tensor_parallel_size),
        "--vllm.gpu_memory_utilization", str(orl.vllm_gpu_memory_utilization),
        *_common(out, cfg.save_steps, cfg.logging_steps, cfg.seed, orl),
    ]  # fmt: skip
    if cfg.beta > 0:  # KL to the SFT model as a loss term, as GRPO does
        args += ["--algo.kl.use_loss", "--algo.kl.estimator", orl.kl_estimator, "--algo.kl.init_coef", str(cfg.beta)]
    else:
        args += ["--algo.kl.init_coef", "0"]
    if orl.dynamic_filtering:  # the file's `scores` are R_acc: drop groups all right (mean 1) or all wrong (mean 0)
        args += ["--algo.dynamic_filtering_enable", "--algo.dynamic_filtering_range", "0", "1"]
    if orl.colocate_all:
        args += ["--train.colocate_all", "--vllm.enable_sleep", "--ds.enable_sleep"]
    if orl.gradient_checkpointing:
        args.append("--actor.gradient_checkpointing_enable")
    return args + list(orl.extra_args)


def grpo_entrypoint(config: BardConfig, model_dir: str, prompts: str, reward_file: str, out: Path) -> str:
    """The job's shell command: the driver needs no GPU; it places OpenRLHF's actors on the cluster."""
    return shlex.join(["python3", "-m", GRPO_MODULE, *grpo_args(config, model_dir, prompts, reward_file, out)])


def student_dir(out: Path) -> str:
    """Where the SFT job loads the student from: the copy `write_student` prepares under `out`. (A fixed path, so
    `--dry-run` prints the job's command without reading the student's files.)"""
    return str(out / "_parts" / "student")


def write_student(config: BardConfig, out: Path, row: dict) -> str:
    """Check the student's chat template on one SFT row, then prepare the student OpenRLHF loads by path, with the
    tokenizer and template it finds there: links to `student.model`'s own files where bard uses that checkpoint
    unchanged; else a copy as the TRL recipe would train it (a student built from config; a checkpoint without
    one-token think tags, added with the embeddings grown to match, or whose chat template, EOS or pad bard
    replaces). Written once: a rerun that follows a job still running must not rewrite what the job loads."""
    from bard_core.student import changes_checkpoint, check_chat_template, load_model, load_tokenizer

    tokenizer = load_tokenizer(config.student, config.budget)
    check_chat_template(tokenizer, row, config.budget, config.student.model or "built from student.architecture")
    path = Path(student_dir(out))
    if path.is_dir():
        return str(path)
    partial = Path(f"{path}.partial")  # renamed when whole: a killed write leaves no half a model at `path`
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    if config.student.model is not None and not changes_checkpoint(config.student, tokenizer):
        for item in Path(config.student.model).iterdir():
            (partial / item.name).symlink_to(item.resolve())
    else:
        load_model(config.student, tokenizer).save_pretrained(partial)
        tokenizer.save_pretrained(partial)
    os.replace(partial, path)
    return str(path)


def write_sft_data(files: list[str], path: Path, kinds: list[str]) -> int:
    """The train rows of `sft_dataset` of these kinds as OpenRLHF reads them (chat messages in `prompt` and
    `completion`)."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    wanted = (pc.field("split") == "train") & pc.field("kind").isin(kinds)
    table = ds.dataset(files, format="parquet").to_table(columns=["prompt", "completion"], filter=wanted)
    if table.num_rows == 0:
        raise BardError(f"sft: no train rows of kind {kinds} in {files[0] if files else 'sft_dataset'} (columns split, kind)")
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return table.num_rows


def rl_rows(files: list[str], rows: int, seed: int):
    """`rows` train prompts of `rl_prompts` (prompt, label), shuffled with `seed`, repeated as needed:
    OpenRLHF runs whole episodes, so the file's length sets the number of steps."""
    import numpy as np
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    table = ds.dataset(files, format="parquet").to_table(columns=["prompt", "label"], filter=pc.field("split") == "train")
    if table.num_rows == 0:
        raise BardError(f"grpo: no train rows in {files[0] if files else 'rl_prompts'} (column split)")
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(table.num_rows) for _ in range(math.ceil(rows / table.num_rows))])
    return table.take(order[:rows])


def write_rl_prompts(files: list[str], path: Path, config: BardConfig) -> int:
    """Write the GRPO prompt file (prompt, label); return its row count."""
    import pyarrow.parquet as pq

    table = rl_rows(files, config.grpo.max_steps * config.grpo.prompts_per_step, config.grpo.seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table.select(["prompt", "label"]), path)
    return table.num_rows
