"""GRPO with TRL's GRPOTrainer from the SFT model on `rl_prompts`, rewarded by the BARD reward
(`rewards.trl_reward_func`: R_acc x R_bud by default, additive by `reward.combine`).

Groups whose completions are all right or all wrong have zero advantage and teach nothing: before RL,
`prefilter_samples` samples of each prompt by the SFT model drop such prompts (counted in metrics.json);
during RL, TRL logs the share of such groups each step (`frac_reward_zero_std`).

Out directory: as the SFT recipe (`_parts/checkpoints`, `tensorboard/`, `model/`, `metrics.json`).
"""

from __future__ import annotations

import gc
import json
import os
from pathlib import Path

from bard_core.budget import Budget
from bard_core.config import BardConfig
from bard_core.errors import BardError
from bard_core.student import no_hub_kernels
from bard_core.training.checkpoints import last_complete_checkpoint, progress_callback


class TRLGRPORecipe:
    def __init__(self, config: BardConfig, model_dir: str, data_files: list[str], out_dir: str | Path):
        self.config, self.model_dir, self.data_files, self.out = config, model_dir, data_files, Path(out_dir)
        self.resumed_from: str | None = None
        self.prefilter: dict = {}

    def setup(self) -> None:
        import torch
        from datasets import load_dataset
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from trl import GRPOConfig, GRPOTrainer

        from bard_core.rewards import trl_reward_func

        cfg = self.config.grpo
        torch.set_num_threads(cfg.num_threads)
        on_gpu = torch.cuda.is_available()
        # The data is checked before the model loads. What fails there is the config's (a BardError): the stage
        # is not retried, since the same config would fail the same way.
        rows = load_dataset("parquet", data_files=self.data_files, split="train", cache_dir=str(self.out / "_parts" / "hf_cache"))
        data = rows.filter(lambda split: split == "train", input_columns="split").select_columns(["prompt", "answer", "budget"])
        if not any(b is not None for b in data["budget"]):
            raise BardError(f"grpo: no train prompt with a budget in {self.data_files[0]} (columns split, budget)")
        validation, stopping = self._validation(rows) if cfg.early_stopping_patience else (None, {})
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        self.tokenizer.padding_side = "left"
        no_hub_kernels()  # for the policy and for the reference model TRL loads itself
        self.model = AutoModelForCausalLM.from_pretrained(self.model_dir)
        if cfg.prefilter_samples:
            data = self._difficulty_filter(data)
        # Room for the largest budget of these prompts: the config's largest (as OpenRLHF) would change what TRL is
        # handed when the draws miss it, so grpo's VERSION would have to change with it.
        limit = Budget.from_config(self.config).completion_limit(max(b for b in data["budget"] if b is not None))
        args = GRPOConfig(
            output_dir=str(self.out / "_parts" / "checkpoints"), learning_rate=cfg.learning_rate, beta=cfg.beta,
            num_generations=cfg.num_generations, per_device_train_batch_size=cfg.prompts_per_step * cfg.num_generations,
            max_completion_length=limit, temperature=cfg.temperature, loss_type=cfg.loss_type,
            max_steps=cfg.max_steps, save_strategy="steps", save_steps=cfg.save_steps, logging_steps=cfg.logging_steps,
            seed=cfg.seed, report_to=cfg.report_to, activation_checkpointing=cfg.gradient_checkpointing, use_cpu=not on_gpu, bf16=on_gpu and torch.cuda.is_bf16_supported(),
            **stopping,
        )  # fmt: skip
        os.environ["TENSORBOARD_LOGGING_DIR"] = str(self.out / "tensorboard")  # transformers 5 reads it from here
        self.trainer = GRPOTrainer(
            model=self.model, reward_funcs=[trl_reward_func(self.config, self.tokenizer)], args=args,
            train_dataset=data, eval_dataset=validation, processing_class=self.tokenizer,
        )  # fmt: skip
        self.trainer.add_callback(progress_callback(self.out))
        if validation is not None:
            from transformers import EarlyStoppingCallback

            self.trainer.add_callback(EarlyStoppingCallback(early_stopping_patience=cfg.early_stopping_patience))

    def _validation(self, rows):
        """Early stopping: a seeded sample of the validation prompts, and the trainer settings that evaluate them at
        every checkpoint (the mean BARD reward, `eval_reward`) and load the best checkpoint at the end."""
        cfg = self.config.grpo
        validation = rows.filter(lambda split: split == "validation", input_columns="split")
        if len(validation) == 0:
            raise BardError(f"grpo.early_stopping_patience: no validation prompts in {self.data_files[0]} "
                            "(assemble.validation_fraction makes them)")  # fmt: skip
        validation = validation.shuffle(seed=cfg.seed).select(range(min(cfg.validation_prompts, len(validation))))
        settings = {
            "eval_strategy": "steps", "eval_steps": cfg.save_steps, "metric_for_best_model": "eval_reward",
            "greater_is_better": True, "load_best_model_at_end": True,
            "per_device_eval_batch_size": cfg.prompts_per_step * cfg.num_generations,
        }  # fmt: skip
        return validation.select_columns(["prompt", "answer", "budget"]), settings

    def _difficulty_filter(self, data):
        """Keep the prompts the SFT model solves sometimes, not always nor never."""
        from bard_core.generation import GenerationRequest, HFBackendConfig, SamplingParams, make_backend
        from bard_core.rewards import score_completions

        cfg = self.config.grpo
        backend = make_backend(HFBackendConfig(backend="hf", model=self.model_dir, num_threads=cfg.num_threads))
        limit = Budget.from_config(self.config).completion_limit(max(b for b in data["budget"] if b is not None))
        sampling = SamplingParams(temperature=cfg.temperature, top_p=1.0, max_tokens=limit, n=cfg.prefilter_samples, seed=cfg.seed)
        rows = data.to_list()
        completions = backend.generate(
            [GenerationRequest(uid=str(i), messages=r["prompt"], sampling=sampling) for i, r in enumerate(rows)]
        )
        k = cfg.prefilter_samples
        keep = []
        for i, row in enumerate(rows):
            group = completions[i * k : (i + 1) * k]
            parts = score_completions([c.text for c in group], [row["answer"]] * k, [row["budget"]] * k, self.config,
                                      self.tokenizer, lengths=None)  # fmt: skip
            solved = sum(1 for p in parts if (p.accuracy or 0) > 0)
            keep.append(0 < solved < k)
        self.prefilter = {"prompts": len(rows), "kept": sum(keep), "all_wrong_or_all_right": len(rows) - sum(keep)}
        if not any(keep):
            raise BardError("grpo: the difficulty filter left no prompt (the SFT model solves all or none of them)")
        return data.select([i for i, k in enumerate(keep) if k])

    def train(self) -> None:
        self.resumed_from = last_complete_checkpoint(self.out / "_parts" / "checkpoints")
        self.result = self.trainer.train(resume_from_checkpoint=self.resumed_from)

    def save(self) -> dict:
        model_dir = self.out / "model"
        self.trainer.save_model(str(model_dir))
        self.tokenizer.save_pretrained(str(model_dir))
        steps = [h for h in self.trainer.state.log_history if "reward" in h]
        metrics = {
            "train": self.result.metrics,
            "steps": self.trainer.state.global_step,
            "per_step": steps,
            "prefilter": self.prefilter,
            "validation": [h for h in self.trainer.state.log_history if "eval_reward" in h],
            "best_step": _step_of(self.trainer.state.best_model_checkpoint),
            "resumed_from": Path(self.resumed_from).name if self.resumed_from else None,
        }
        (self.out / "metrics.json").write_text(json.dumps(metrics, indent=2))
        return metrics

    def cleanup(self) -> None:
        del self.trainer, self.model
        gc.collect()


def _step_of(checkpoint: str | None) -> int | None:
    return int(checkpoint.rsplit("-", 1)[-1]) if checkpoint else None
