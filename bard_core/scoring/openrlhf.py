"""The reward as OpenRLHF calls it: `reward_func(queries, prompts, labels)`, built by `make_reward_func`.

OpenRLHF (0.10+) calls it from rollout worker threads, one sample per call: `queries` are `[prompt +
response]` decoded with special tokens kept, `prompts` the chat-templated prompt, `labels` the dataset's
label column (`reward.reward_label`). It puts each returned value in `torch.tensor([value])` and swallows
exceptions, so the function returns plain floats for a one-sample call and lists for a longer one, and
catches its own errors: reward 0, counted in `extra_logs["reward_errors"]`, the first few printed.
"""

from __future__ import annotations

import sys
import threading
import traceback

from .reward import RewardParts, read_label, score_completion
from .thinking import budget_span, prompt_opens_thinking

PROMPT_TAIL_CHARS = 200  # OpenRLHF truncates long prompts from the left: find the response after the prompt's end
MAX_ERRORS_PRINTED = 5  # per worker process: enough to diagnose, without flooding the rollout logs
LOG_KEYS = ("accuracy", "budget_reward", "thinking_tokens", "over_budget", "truncated", "unscorable")
_lock = threading.Lock()
_errors_printed = 0


def response_of(query: str, prompt: str) -> str:
    """The response in a query (prompt + response), also when OpenRLHF cut the prompt's start."""
    if query.startswith(prompt):
        return query[len(prompt) :]
    tail = prompt[-PROMPT_TAIL_CHARS:]
    at = query.find(tail) if tail else -1
    return query[at + len(tail) :] if at >= 0 else query


def make_reward_func(budget_cfg, reward_cfg, verify_cfg, tokenizer):
    """OpenRLHF's `reward_func` for these config sections, counting with `tokenizer` (a `tokens` counter)."""

    def score_one(query: str, prompt: str, label) -> RewardParts:
        answer, budget, choices = read_label(label)
        response = response_of(query, prompt)
        opened = prompt_opens_thinking(prompt, budget_cfg)
        length = tokenizer.count([budget_span(response, budget_cfg, opened)])[0]
        return score_completion(
            response, answer, budget, length,
            budget_cfg=budget_cfg, reward_cfg=reward_cfg, verify_cfg=verify_cfg, choices=choices, opened=opened,
        )  # fmt: skip

    def reward_func(queries, prompts, labels, **kwargs):
        global _errors_printed
        rewards, scores, logs, errors = [], [], [], []
        for query, prompt, label in zip(queries, prompts, labels, strict=False):
            try:
                parts = score_one(query, prompt, label)
                rewards.append(0.0 if parts.reward is None else float(parts.reward))
                scores.append(parts.accuracy or 0.0)
                logs.append(parts.as_log())
                errors.append(0.0)
            except Exception:
                with _lock:
                    _errors_printed += 1
                    if _errors_printed <= MAX_ERRORS_PRINTED:
                        print("[bard reward_func] error, reward 0:\n" + traceback.format_exc(), file=sys.stderr)
                rewards.append(0.0)
                scores.append(0.0)
                logs.append(dict.fromkeys(LOG_KEYS, 0.0))
                errors.append(1.0)
        extra = {key: [entry[key] for entry in logs] for key in LOG_KEYS}
        extra["reward_errors"] = errors
        if len(rewards) == 1:  # OpenRLHF's single-sample call: plain floats, as torch.tensor([value]) expects
            return {"rewards": rewards[0], "scores": scores[0], "extra_logs": {k: v[0] for k, v in extra.items()}}
        return {"rewards": rewards, "scores": scores, "extra_logs": extra}

    return reward_func
