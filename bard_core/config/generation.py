"""Config of the generation backends: what to sample (`SamplingParams`) and with what (`hf`, `openai`, `vllm`).

A stage's section holds one backend config, chosen by its `backend` key:

    teacher:
      generation: {backend: openai, base_url: "https://api.deepseek.com/v1", model: deepseek-reasoner,
                   api_key_env: DEEPSEEK_API_KEY}
      sampling: {temperature: 0.6, top_p: 0.95, max_tokens: 32768, n: 4, seed: 0}

API keys never appear in config: `api_key_env` names an environment variable read when requests are sent.
"""

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from bard_core.config.section import Section


class SamplingParams(Section):
    """How to sample one request. Sample i of a request is seeded with `seed + i`, on every backend, so any
    single sample can be regenerated alone. The defaults are DeepSeek-R1's recommended settings."""

    temperature: float = Field(0.6, ge=0, description="0 means greedy decoding")
    top_p: float = Field(
        0.95, gt=0, le=1, description="nucleus sampling: keep the smallest set of tokens with this mass"
    )
    max_tokens: int = Field(
        ..., ge=1, description="completion tokens at most; required, since engines' defaults differ (vLLM's is 16)"
    )
    n: int = Field(1, ge=1, description="samples per request")
    seed: int = Field(
        0,
        ge=0,
        description="sample i is drawn with seed + i; give each request its own seed (e.g. derived from its "
        "uid): requests sharing a seed share their random draws, so their samples are correlated",
    )


class HFBackendConfig(Section):
    """transformers `model.generate`, batched with left padding and a KV cache, on CPU or one GPU."""

    backend: Literal["hf"]
    model: str = Field(..., description="a local model directory (or a Hub id already in the local cache)")
    device: str = Field("auto", description="'auto' (cuda when available, else cpu), 'cpu', 'cuda', 'cuda:1', ...")
    dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description="weights and activations")
    batch_size: int = Field(8, ge=1, description="samples decoded together in one model.generate call")
    num_threads: int = Field(
        1,
        ge=1,
        description="torch CPU threads (process-wide); on a loaded 2-core machine 2 threads ran 6.5x slower than 1",
    )
    chat_template_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="extra chat template variables, e.g. {enable_thinking: false} for Qwen3"
    )


class OpenAIBackendConfig(Section):
    """Any OpenAI-compatible endpoint (vLLM or SGLang server, `transformers serve`, a hosted API)."""

    backend: Literal["openai"]
    base_url: str = Field(..., description="up to and including /v1, e.g. http://127.0.0.1:8000/v1")
    model: str = Field(..., description="the `model` field of every request")
    api_key_env: str | None = Field(
        None, description="environment variable holding the API key, read at call time; None sends no key"
    )
    concurrency: int = Field(16, ge=1, description="requests in flight at once")
    timeout_s: float = Field(
        600.0, gt=0, description="one attempt's limit, connect to last byte; long reasoning needs minutes"
    )
    connect_timeout_s: float = Field(10.0, gt=0, description="a connection not made in this time is retried")
    max_attempts: int = Field(6, ge=1, description="attempts per sample, the first included, before the run fails")
    backoff_base_s: float = Field(1.0, gt=0, description="retry k waits a random time up to base * 2**(k-1)")
    backoff_cap_s: float = Field(60.0, gt=0, description="longest wait between attempts, Retry-After included")
    chat_template_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="sent as `chat_template_kwargs` when not empty (vLLM, SGLang and transformers serve take it; "
        "hosted APIs may reject it)",
    )


class VLLMBackendConfig(Section):
    """vLLM's offline engine (`vllm.LLM`) in this process; the caller runs it in a GPU actor."""

    backend: Literal["vllm"]
    model: str = Field(..., description="a local model directory or a Hub id")
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs one engine spans")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="share of GPU memory for weights and KV cache")
    max_model_len: int | None = Field(None, ge=1, description="context length; None takes the model's")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field("auto", description="weights and activations")
    chat_template_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="extra chat template variables, e.g. {enable_thinking: false} for Qwen3"
    )


class ScriptedBackendConfig(Section):
    """The demo domain's deterministic engines (`bard_core/arithmetic.py`): a teacher writing verbose,
    self-checking worked solutions, and a compressor returning the most detailed tier of a solution that fits
    the budget asked for, and that compressor's reference answer to a student's prompt (see scripted_backend.py).
    No model: instant, and exactly reproducible from each request's seed."""

    backend: Literal["scripted"]
    role: Literal["teacher", "compressor", "reference"]
    model: str = Field(
        "scripted-arithmetic-4", description="the `model` column of its rows; part of the artifact key, so the version "
        "in the default changes whenever the scripts do"
    )
    tokenizer: str | None = Field(
        None, description="compressor: the tokenizer.json that counts budget tokens (keep it `budget.tokenizer`)"
    )
    slip_rate: float = Field(0.05, ge=0, le=1, description="teacher: share of solutions with one miscalculated step")
    overshoot_rate: float = Field(
        0.1, ge=0, le=1, description="compressor: share of rewrites one tier too detailed, so over the budget"
    )

    @model_validator(mode="after")
    def _compressor_counts(self) -> "ScriptedBackendConfig":
        if self.role in ("compressor", "reference") and not self.tokenizer:
            raise ValueError(f"a scripted {self.role} needs `tokenizer` to fit rewrites to the budget")
        return self


GenerationBackendConfig = Annotated[
    HFBackendConfig | OpenAIBackendConfig | VLLMBackendConfig | ScriptedBackendConfig, Field(discriminator="backend")
]
