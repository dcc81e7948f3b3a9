"""The `hf` backend: transformers `model.generate`, batched with left padding and a KV cache.

Reproducibility: each sample draws its tokens from its own `torch.Generator` seeded with its seed
(`sampling.seed + sample_idx`), so a sample does not depend on which other samples share its batch,
on `batch_size`, or on the order of requests. Re-running gives the same text for the same model, seed,
device type, dtype and library versions; a different batch composition changes the padding, whose
floating-point noise can in rare cases flip a near-tie token. CPU and CUDA generators give different
streams. Greedy decoding (temperature 0) is reproducible the same way.

Sampling uses exactly `SamplingParams` (temperature, top_p): the model's own generation defaults
(Qwen3 ships top_k=20, some models a repetition penalty) are not applied, as on the other backends.

Generation stops at the model's EOS and at the token its chat template ends a turn with (`<|im_end|>`), which
a base checkpoint's EOS (`<|endoftext|>`) is not. When the chat template's generation prompt opens the thinking
itself (DeepSeek-R1-Distill's ends with `<think>\\n`), that opening is written back in front of the completion's
text, as the openai backend writes returned reasoning back: every completion reads as the model's whole turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from bard_core.config.generation import HFBackendConfig, SamplingParams
from bard_core.generation.protocol import Completion, GenerationRequest, expand_samples, thinking_opened_by
from bard_core.student import end_of_turn, no_hub_kernels


class HFBackend:
    def __init__(self, config: HFBackendConfig):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

        self.config = config
        # Process-wide: torch has one intra-op thread pool per process.
        torch.set_num_threads(config.num_threads)
        device = config.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(config.model)
        no_hub_kernels()
        model = AutoModelForCausalLM.from_pretrained(config.model, dtype=getattr(torch, config.dtype))
        self.model = model.to(self.device).eval()

        eos = model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        if eos is None:
            raise ValueError(f"{config.model}: neither the model nor the tokenizer names an EOS token")
        self.eos_ids = [eos] if isinstance(eos, int) else list(eos)
        turn_end = end_of_turn(self.tokenizer)
        if turn_end is not None and self.tokenizer.convert_tokens_to_ids(turn_end) not in self.eos_ids:
            self.eos_ids.append(self.tokenizer.convert_tokens_to_ids(turn_end))
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else self.eos_ids[0]
        # Replace the model's generation defaults: only our SamplingParams decide how tokens are drawn.
        self.model.generation_config = GenerationConfig(eos_token_id=self.eos_ids, pad_token_id=self.pad_id)

    def prompt_ids(self, request: GenerationRequest) -> list[int]:
        """The token ids the model sees: the chat template applied to `messages`, or the raw `prompt`
        tokenized with the tokenizer's special tokens (as vLLM and OpenAI-compatible servers do)."""
        return self._prompt(request)[0]

    def _prompt(self, request: GenerationRequest) -> tuple[list[int], str]:
        """The prompt's ids, and the opening of the thinking its chat template wrote at its end ("" if none)."""
        if request.messages is None:
            return self.tokenizer(request.prompt)["input_ids"], ""  # the caller's text: it carries its own context
        text = self.tokenizer.apply_chat_template(
            request.messages, tokenize=False, add_generation_prompt=True, **self.config.chat_template_kwargs
        )
        # The template already wrote the special tokens (BOS, role markers).
        return self.tokenizer(text, add_special_tokens=False)["input_ids"], thinking_opened_by(text)

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        samples = expand_samples(requests)
        rendered = [self._prompt(r) for r in requests]
        prompts = [ids for r, (ids, _) in zip(requests, rendered) for _ in range(r.sampling.n)]  # one per sample
        openings = [opened for r, (_, opened) in zip(requests, rendered) for _ in range(r.sampling.n)]
        # Batch samples of similar max_tokens and prompt length together: less padding, fewer wasted steps.
        # Per-sample generators make the grouping invisible in the results.
        order = sorted(range(len(samples)), key=lambda k: (samples[k][0].sampling.max_tokens, len(prompts[k])))
        results: list[Completion | None] = [None] * len(samples)
        for start in range(0, len(order), self.config.batch_size):
            batch = order[start : start + self.config.batch_size]
            completions = self._generate_batch([samples[k] for k in batch], [prompts[k] for k in batch])
            for k, completion in zip(batch, completions):
                results[k] = replace(completion, text=openings[k] + completion.text) if openings[k] else completion
        return results  # type: ignore[return-value]

    def _generate_batch(
        self, rows: list[tuple[GenerationRequest, int, int]], prompts: list[list[int]]
    ) -> list[Completion]:
        import torch
        from transformers import GenerationConfig, LogitsProcessorList

        width = max(len(p) for p in prompts)
        input_ids = torch.tensor([[self.pad_id] * (width - len(p)) + p for p in prompts], device=self.device)
        attention_mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=self.device)
        max_new = max(r.sampling.max_tokens for r, _, _ in rows)
        sampler = _PerRowSampler([r.sampling for r, _, _ in rows], [seed for _, _, seed in rows], self.device)
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                # Greedy over the sampler's one-hot scores = the token the sampler drew.
                generation_config=GenerationConfig(
                    max_new_tokens=max_new, do_sample=False, eos_token_id=self.eos_ids, pad_token_id=self.pad_id
                ),
                logits_processor=LogitsProcessorList([sampler]),
            )
        completions = []
        for row, ((request, sample_idx, seed), prompt) in enumerate(zip(rows, prompts)):
            generated = out[row, width:].tolist()
            limit = request.sampling.max_tokens  # rows with a smaller limit than the batch's are cut here
            stop_at = next((i for i, t in enumerate(generated) if t in self.eos_ids), None)
            if stop_at is not None and stop_at < limit:
                tokens, finish = generated[: stop_at + 1], "stop"
            else:
                tokens, finish = generated[:limit], "length"
            completions.append(
                Completion(
                    uid=request.uid,
                    sample_idx=sample_idx,
                    text=self.tokenizer.decode(tokens, skip_special_tokens=True),
                    prompt_tokens=len(prompt),
                    completion_tokens=len(tokens),
                    finish_reason=finish,
                    seed=seed,
                    model=self.config.model,
                )
            )
        return completions


class _PerRowSampler:
    """A logits processor that draws each row's next token with that row's own seeded generator (temperature,
    then top-p), and returns scores where only the drawn token is possible."""

    def __init__(self, params: list[SamplingParams], seeds: list[int], device):
        import torch

        self.params = params
        self.generators = [torch.Generator(device=device).manual_seed(seed) for seed in seeds]

    def __call__(self, input_ids, scores):
        import torch

        chosen = scores.float().argmax(dim=-1)  # the greedy rows' tokens, in one call; sampled rows are drawn below
        for row, (params, generator) in enumerate(zip(self.params, self.generators)):
            if params.temperature == 0:
                continue
            logits = scores[row].float()
            probs = torch.softmax(logits / params.temperature, dim=-1)
            if params.top_p < 1:
                sorted_probs, sorted_ids = probs.sort(descending=True)
                # Keep a token while the mass before it is below top_p (so the first token is always kept).
                keep = (sorted_probs.cumsum(0) - sorted_probs) < params.top_p
                probs = torch.zeros_like(probs).scatter(0, sorted_ids[keep], sorted_probs[keep])
            chosen[row] = torch.multinomial(probs, 1, generator=generator)[0]
        return torch.full_like(scores, float("-inf")).scatter_(1, chosen[:, None], 0.0)
