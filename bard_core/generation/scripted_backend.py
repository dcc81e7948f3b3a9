"""The demo's scripted engines: deterministic stand-ins for the teacher and the compressor models,
following their contracts on the arithmetic domain (`bard_core/arithmetic.py`).

- teacher: the user turn holds an arithmetic question; the reply is a verbose, self-checking worked solution
  in `<think>...</think>` ending in `\\boxed{}`, its wording varied and, at `slip_rate`, one step miscalculated.
- compressor: the user turn holds the question, the reasoning (after "Reasoning:", up to a blank line, as the
  default compression template writes it) and then the budget N; the reply is the most detailed tier of that
  reasoning whose thinking fits N tokens, and at `overshoot_rate` one tier more detailed (over the budget).
- reference: the user turn is a student's prompt, a question and then its budget text with N; the reply is what
  the compressor makes of a correct solution for N, never overshooting: the floor of a distilled student's error
  |L - B| / B (the tiers do not fill every budget), evaluated beside the student.

The engine has no config of the prompts, so it reads N by position, not by wording: the last number of the user
turn after the question (reference) or the reasoning (compressor), so any `budget.template` (and compression
template) that writes the budget as its last number works.

Each sample draws from its own seed, so a resumed run writes the same rows.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from bard_core import arithmetic
from bard_core.config.generation import ScriptedBackendConfig
from bard_core.generation.protocol import Completion, GenerationError, GenerationRequest, expand_samples

REASONING = re.compile(r"Reasoning:\n(.*?)\n\n", re.S)
NUMBER = re.compile(r"\d+")


class ScriptedBackend:
    def __init__(self, config: ScriptedBackendConfig):
        self.config = config
        self.tokenizer = None
        if config.tokenizer:
            from tokenizers import Tokenizer

            self.tokenizer = Tokenizer.from_file(config.tokenizer)

    def count(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids) if self.tokenizer else len(text.split())

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        out = []
        for request, index, seed in expand_samples(requests):
            user = request.prompt if request.prompt is not None else request.messages[-1]["content"]
            rng = random.Random(seed)
            try:
                text = {"teacher": self._teacher, "compressor": self._compressor, "reference": self._reference}[
                    self.config.role
                ](user, rng)
            except ValueError as err:
                raise GenerationError(f"request {request.uid!r}: the scripted {self.config.role}: {err}") from None
            tokens = self.count(text)
            limit = request.sampling.max_tokens
            finish = "stop"
            if limit is not None and tokens > limit:  # as a model would be: cut at max_tokens
                ids = self.tokenizer.encode(text, add_special_tokens=False).ids[:limit] if self.tokenizer else None
                text = self.tokenizer.decode(ids) if ids is not None else " ".join(text.split()[:limit])
                tokens, finish = limit, "length"
            out.append(Completion(uid=request.uid, sample_idx=index, text=text, prompt_tokens=self.count(user),
                                  completion_tokens=tokens, finish_reason=finish, seed=seed, model=self.config.model))  # fmt: skip
        return out

    def _teacher(self, user: str, rng: random.Random) -> str:
        problem = arithmetic.parse_question(user)
        lines = arithmetic.worked_lines(problem, rng, self.config.slip_rate)
        return arithmetic.completion(lines, arithmetic.final_answer(lines))

    def _compressor(self, user: str, rng: random.Random) -> str:
        reasoning = REASONING.search(user)
        budget = _last_number(user, reasoning.end()) if reasoning else None
        if budget is None:
            raise ValueError("expected 'Reasoning:' followed by the reasoning and a blank line, then the budget")
        lines = [x.strip() for x in reasoning.group(1).strip().splitlines() if x.strip()]
        answer = arithmetic.final_answer(lines)
        if answer is None:
            raise ValueError("the reasoning has no step to take the answer from")
        tiers = [arithmetic.tier(lines, name) for name in arithmetic.TIERS]
        fits = self._most_detailed_fit(tiers, budget)
        if fits > 0 and rng.random() < self.config.overshoot_rate:
            fits -= 1
        return arithmetic.completion(tiers[fits], answer)

    def _reference(self, user: str, rng: random.Random) -> str:
        question = arithmetic.QUESTION.search(user)
        budget = _last_number(user, question.end()) if question else None
        if budget is None:
            raise ValueError("expected an arithmetic question followed by its budget")
        lines = arithmetic.worked_lines(arithmetic.parse_question(user), rng, slip_rate=0.0)
        tiers = [arithmetic.tier(lines, name) for name in arithmetic.TIERS]
        return arithmetic.completion(tiers[self._most_detailed_fit(tiers, budget)], arithmetic.final_answer(lines))

    def _most_detailed_fit(self, tiers: list[list[str]], budget: int) -> int:
        """The first tier (most detailed first) whose thinking fits the budget; the last (the answer alone) if none."""
        return next(i for i, t in enumerate(tiers) if i == len(tiers) - 1 or self.count(_thinking(t)) <= budget)


def _last_number(text: str, start: int) -> int | None:
    found = NUMBER.findall(text, start)
    return int(found[-1]) if found else None


def _thinking(lines: list[str]) -> str:
    """The thinking span of `arithmetic.completion(lines, ...)`: what a budget counts."""
    return "\n" + "\n".join(lines) + "\n" if lines else "\n"
