"""The `vllm` backend: vLLM's offline engine (`vllm.LLM`) in this process, meant for a GPU Ray actor
that exits when done (vLLM does not reliably free GPU memory in-process).

vLLM cannot be installed on the CPU machines this project is developed on, so everything except the
engine calls is plain functions over plain data (`engine_args`, `engine_requests`, `to_completion`),
tested without vLLM; `VLLMBackend` only feeds their dicts to `vllm.LLM` and `vllm.SamplingParams`.

Each sample is its own engine request with `n=1` and seed `seed + sample_idx` (rather than one request
with `n` samples from a single seed), so every sample is reproducible alone, as on the other backends;
vLLM's prefix cache shares the prompt's KV cache between the samples of a request.

When the chat template's generation prompt opens the thinking itself (DeepSeek-R1-Distill's ends with `<think>\\n`),
that opening is written back in front of the completion's text, as the hf backend does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bard_core.config.generation import VLLMBackendConfig
from bard_core.generation.protocol import Completion, GenerationRequest, expand_samples, thinking_opened_by


def engine_args(config: VLLMBackendConfig) -> dict[str, Any]:
    """Keyword arguments of `vllm.LLM(...)`."""
    args: dict[str, Any] = {
        "model": config.model,
        "tensor_parallel_size": config.tensor_parallel_size,
        "gpu_memory_utilization": config.gpu_memory_utilization,
        "dtype": config.dtype,
    }
    if config.max_model_len is not None:
        args["max_model_len"] = config.max_model_len
    return args


def engine_requests(requests: Sequence[GenerationRequest]) -> list[dict[str, Any]]:
    """One dict per sample, in `generate`'s order: uid, sample_idx, seed, `messages` or `prompt`, and
    `sampling`, the keyword arguments of `vllm.SamplingParams` (max_tokens always set: vLLM's default is 16)."""
    items = []
    for request, sample_idx, seed in expand_samples(requests):
        s = request.sampling
        item: dict[str, Any] = {
            "uid": request.uid,
            "sample_idx": sample_idx,
            "seed": seed,
            "sampling": {
                "n": 1,
                "temperature": s.temperature,
                "top_p": s.top_p,
                "max_tokens": s.max_tokens,
                "seed": seed,
            },  # fmt: skip
        }
        if request.messages is not None:
            item["messages"] = request.messages
        else:
            item["prompt"] = request.prompt
        items.append(item)
    return items


def to_completion(
    item: dict[str, Any], prompt_tokens: int, text: str, token_ids: Sequence[int], finish_reason: str | None,
    model: str, templated_prompt: str | None = None,
) -> Completion:
    """A Completion from one engine output (`RequestOutput.prompt_token_ids`, and the `text`, `token_ids`
    and `finish_reason` of its only `CompletionOutput`). vLLM reports "stop" for EOS and stop strings,
    "length" for max_tokens, "abort" for an aborted request. `templated_prompt`: the text the chat template made of
    a chat item's messages; the thinking it opens is written back. A plain prompt is the caller's own text and
    carries its own context."""
    opened = thinking_opened_by(templated_prompt) if "messages" in item and templated_prompt else ""
    return Completion(
        uid=item["uid"],
        sample_idx=item["sample_idx"],
        text=opened + text,
        prompt_tokens=prompt_tokens,
        completion_tokens=len(token_ids),
        finish_reason=finish_reason or "abort",
        seed=item["seed"],
        model=model,
    )


class VLLMBackend:
    def __init__(self, config: VLLMBackendConfig):
        from vllm import LLM

        self.config = config
        self.llm = LLM(**engine_args(config))

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        from vllm import SamplingParams

        items = engine_requests(requests)
        chat = [k for k, item in enumerate(items) if "messages" in item]
        plain = [k for k, item in enumerate(items) if "prompt" in item]
        outputs: list[Any] = [None] * len(items)
        if chat:
            results = self.llm.chat(
                [items[k]["messages"] for k in chat],
                sampling_params=[SamplingParams(**items[k]["sampling"]) for k in chat],
                use_tqdm=False,
                chat_template_kwargs=self.config.chat_template_kwargs or None,
            )
            for k, result in zip(chat, results):
                outputs[k] = result
        if plain:
            results = self.llm.generate(
                [items[k]["prompt"] for k in plain],
                sampling_params=[SamplingParams(**items[k]["sampling"]) for k in plain],
                use_tqdm=False,
            )
            for k, result in zip(plain, results):
                outputs[k] = result
        completions = []
        for item, result in zip(items, outputs):
            out = result.outputs[0]
            templated = result.prompt  # the chat template's text; some vLLM versions keep the token ids only
            if not isinstance(templated, str):
                templated = self.llm.get_tokenizer().decode(result.prompt_token_ids)
            completions.append(
                to_completion(item, len(result.prompt_token_ids), out.text, out.token_ids, out.finish_reason,
                              self.config.model, templated)  # fmt: skip
            )
        return completions
