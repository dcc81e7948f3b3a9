"""SFT with TRL's SFTTrainer on `sft_dataset` (conversational prompt/completion, loss on completions only).

Out directory:
    _parts/checkpoints/checkpoint-N/   every `save_steps`; a rerun resumes from the last one (scratch)
    tensorboard/                the trainer's logs
    model/                      the trained model and tokenizer (save)
    metrics.json                loss curve, final metrics, and where training resumed from (save)
"""

from __future__ import annotations

import gc
import json
import os
from pathlib import Path

from bard_core.config import BardConfig
from bard_core.config.stages import LoRAConfig
from bard_core.errors import BardError
from bard_core.student import check_chat_template, load_model, load_tokenizer, no_hub_kernels
from bard_core.training.checkpoints import last_complete_checkpoint, progress_callback


def lora_config(cfg: LoRAConfig | None):
    """peft's LoraConfig for `sft.lora`, or None (every weight is trained)."""
    if cfg is None:
        return None
    from peft import LoraConfig

    return LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=cfg.target_modules,
                      task_type="CAUSAL_LM")


class PackedRowsCollator:
    """Batches of TRL's packed rows, each row kept apart. TRL's own collator flattens a batch into one sequence,
    which only FlashAttention handles cheaply: sdpa or eager attend across the whole flattened batch (half the
    speed of padded batches on CPU). Here each row gets its own position ids and no attention mask, so
    transformers masks attention to each packed sequence within its row."""

    def __init__(self, pad_token_id: int):
        from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

        self.collate = DataCollatorForLanguageModeling(pad_token_id=pad_token_id, return_position_ids=True)

    def __call__(self, examples: list[dict]) -> dict:
        batch = self.collate(examples)
        del batch["attention_mask"]  # with a mask, transformers would not look for packed sequences
        # a sequence's first token is not predicted from the end of the one before it in the row
        batch["labels"][batch["position_ids"] == 0] = -100
        return batch


class TRLSFTRecipe:
    def __init__(self, config: BardConfig, data_files: list[str], out_dir: str | Path):
        self.config, self.data_files, self.out = config, data_files, Path(out_dir)
        self.resumed_from: str | None = None

    def setup(self) -> None:
        import torch
        from datasets import load_dataset
        from trl import SFTConfig, SFTTrainer

        cfg = self.config.sft
        torch.set_num_threads(cfg.num_threads)
        on_gpu = torch.cuda.is_available()
        # The data and the settings are checked before the model loads. What fails there is the config's
        # (a BardError): the stage is not retried, since the same config would fail the same way.
        data = load_dataset("parquet", data_files=self.data_files, split="train", cache_dir=str(self.out / "_parts" / "hf_cache"))
        kinds = set(cfg.kinds)
        data = data.filter(lambda split, kind: split == "train" and kind in kinds, input_columns=["split", "kind"])
        if len(data) == 0:
            raise BardError(f"sft: no train rows of kind {cfg.kinds} in {self.data_files[0]} (columns split, kind)")
        data = data.select_columns(["prompt", "completion"])
        try:
            args = SFTConfig(
                output_dir=str(self.out / "_parts" / "checkpoints"),
                learning_rate=cfg.learning_rate, num_train_epochs=cfg.epochs, max_steps=cfg.max_steps,
                per_device_train_batch_size=cfg.batch_size, gradient_accumulation_steps=cfg.gradient_accumulation_steps,
                max_length=cfg.max_length, packing=cfg.packing, warmup_steps=cfg.warmup_ratio,  # a float < 1 is a ratio
                lr_scheduler_type=cfg.lr_scheduler, lr_scheduler_kwargs=cfg.lr_scheduler_kwargs, weight_decay=cfg.weight_decay, save_strategy="steps",
                save_steps=cfg.save_steps, logging_steps=cfg.logging_steps, seed=cfg.seed, data_seed=cfg.seed,
                report_to=cfg.report_to, completion_only_loss=True, dataset_num_proc=1, activation_checkpointing=cfg.gradient_checkpointing,
                use_cpu=not on_gpu, bf16=on_gpu and torch.cuda.is_bf16_supported(),
                train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
            )  # fmt: skip
        except ValueError as err:  # TRL's and transformers' own checks, e.g. an unknown lr_scheduler
            raise BardError(f"sft: the trainer refuses these settings: {err}") from None
        self.tokenizer = load_tokenizer(self.config.student, self.config.budget)
        student = self.config.student.model or "built from student.architecture"
        check_chat_template(self.tokenizer, data[0], self.config.budget, student)
        no_hub_kernels()
        self.model = load_model(self.config.student, self.tokenizer)
        # transformers 5 reads the TensorBoard directory from the environment (this is the training process).
        os.environ["TENSORBOARD_LOGGING_DIR"] = str(self.out / "tensorboard")
        self.trainer = SFTTrainer(model=self.model, args=args, train_dataset=data, processing_class=self.tokenizer,
                                  peft_config=lora_config(cfg.lora))
        if cfg.lora is not None and self.tags_added():
            # LoRA freezes the embeddings, so think tags added to a vocabulary without them would keep their initial
            # rows and never be written (a real 135M run wrote " tempfile" for `</think>`): the embeddings train too.
            # (peft's trainable_token_indices would train only those rows, but TRL's fused LM head reads the plain
            # weight, so the output side would stay untrained.)
            for embedding in (self.trainer.model.get_input_embeddings(), self.trainer.model.get_output_embeddings()):
                embedding.weight.requires_grad_(True)
        # Set after construction: with packing, TRL refuses a collator passed in. FlashAttention keeps TRL's own.
        if cfg.packing and "flash" not in self.model.config._attn_implementation:
            self.trainer.data_collator = PackedRowsCollator(self.tokenizer.pad_token_id)
        self.trainer.add_callback(progress_callback(self.out))

    def tag_ids(self) -> list[int]:
        budget = self.config.budget
        return [self.tokenizer.convert_tokens_to_ids(tag) for tag in (budget.think_open, budget.think_close)]

    def tags_added(self) -> bool:
        """Whether `load_tokenizer` added the think tags: the pretrained student's vocabulary had no such tokens."""
        if self.config.student.model is None:
            return False
        from transformers import AutoConfig

        return max(self.tag_ids()) >= AutoConfig.from_pretrained(self.config.student.model).vocab_size

    def train(self) -> None:
        self.resumed_from = last_complete_checkpoint(self.out / "_parts" / "checkpoints")
        self.result = self.trainer.train(resume_from_checkpoint=self.resumed_from)

    def save(self) -> dict:
        model_dir = self.out / "model"
        if self.config.sft.lora is None:
            self.trainer.save_model(str(model_dir))
        else:  # the adapters merged in: GRPO and the evaluation load a plain model directory
            self.trainer.model.merge_and_unload().save_pretrained(str(model_dir))
        self.tokenizer.save_pretrained(str(model_dir))
        history = self.trainer.state.log_history
        metrics = {
            "train": self.result.metrics,
            "loss_curve": [
                {"step": h["step"], "loss": h["loss"], "num_tokens": h.get("num_tokens")} for h in history if "loss" in h
            ],
            "steps": self.trainer.state.global_step,
            "resumed_from": Path(self.resumed_from).name if self.resumed_from else None,
        }
        (self.out / "metrics.json").write_text(json.dumps(metrics, indent=2))
        return metrics

    def cleanup(self) -> None:
        del self.trainer, self.model
        gc.collect()

