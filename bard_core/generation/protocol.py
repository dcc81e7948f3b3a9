"""What every generation backend takes and gives back.

`generate(requests)` returns, for each request in order, its `n` samples in order (sample_idx 0..n-1):
`len(result) == sum(r.sampling.n for r in requests)`. Sample i is drawn with seed `sampling.seed + i`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from bard_core.config import BudgetConfig
from bard_core.config.generation import SamplingParams
from bard_core.errors import BardError
from bard_core.scoring.thinking import prompt_opens_thinking

# The opening think tag the backends write back (bard's default `budget.think_open`, DeepSeek-R1's own).
THINK_TAGS = BudgetConfig()


class GenerationError(BardError):
    """A generation that cannot be completed: bad input, a rejected request, or retries exhausted."""


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt: chat `messages` (the model's chat template is applied) or a raw `prompt` string."""

    uid: str
    sampling: SamplingParams
    messages: list[dict[str, str]] | None = None
    prompt: str | None = None

    def __post_init__(self) -> None:
        if (self.messages is None) == (self.prompt is None):
            raise GenerationError(f"request {self.uid!r}: give exactly one of `messages` or `prompt`")


@dataclass(frozen=True)
class Completion:
    """One sample. Token counts are the model's own: `completion_tokens` includes the EOS token when the
    model stopped. `finish_reason` is "stop" (EOS) or "length" (`max_tokens` reached); an endpoint's other
    reasons (e.g. "content_filter") are passed through."""

    uid: str
    sample_idx: int
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    seed: int
    model: str


class GenerationBackend(Protocol):
    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]: ...


def expand_samples(requests: Sequence[GenerationRequest]) -> list[tuple[GenerationRequest, int, int]]:
    """(request, sample_idx, seed) for every sample, in the order `generate` returns them."""
    return [(r, i, r.sampling.seed + i) for r in requests for i in range(r.sampling.n)]


def thinking_opened_by(templated_prompt: str) -> str:
    """The opening of the thinking that a chat template wrote at the end of the prompt (DeepSeek-R1-Distill's ends
    with `<think>\\n`), or "". The hf and vllm backends write it back in front of the completion's text, as the
    openai backend writes returned reasoning back: every completion reads as the model's whole turn."""
    if not prompt_opens_thinking(templated_prompt, THINK_TAGS):
        return ""
    return templated_prompt[templated_prompt.rfind(THINK_TAGS.think_open) :]
