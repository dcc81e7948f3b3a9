"""The BARD reward R = R_acc x R_bud, once, for data filtering, RL and evaluation alike.

- `budget_reward(L, B, cfg)`: R_bud in [0, 1] (shapes `cap`, `hard`, `target`; DESIGN.md).
- `score_completion(...)`: one completion -> `RewardParts` (reward and every component, for logging).
- `score_completions(...)`: a batch, counting budget tokens with the student's tokenizer.
- `trl_reward_func(config, tokenizer)`: a reward function for TRL's GRPOTrainer.
- `reward_label(answer, budget)`: the JSON label the OpenRLHF reward file reads (`reward_file.py`).

A sample whose gold cannot be parsed has `accuracy` None and `reward` None: it is skipped, not
scored 0 (TRL 1.16 excludes None rewards from the group baseline and gives them no advantage).

`budget_reward`, `combine_reward`, `RewardParts` and `score_completion` are also copied verbatim
into the generated OpenRLHF reward file, so this module uses only the standard library at module level.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bard_core.budget import (
    count_budget_tokens,
    count_budget_tokens_from_ids,
    parse_budget,
    prompt_opens_thinking,
    split_thinking,
)
from bard_core.verify import as_choices, check_answer, extract_answer

if TYPE_CHECKING:
    from bard_core.config import BardConfig, BudgetConfig, RewardConfig, VerifyConfig


@dataclass(frozen=True)
class RewardParts:
    reward: float | None  # None: the gold cannot be parsed, skip the sample
    accuracy: float | None  # R_acc: 1.0 right, 0.0 wrong or no answer, None unscorable
    budget_reward: float  # R_bud
    length: int  # budget tokens used (thinking or whole completion, by config)
    budget: int | None  # None: an unbudgeted sample (R_bud is 1)
    over_budget: bool  # L > B*(1+tau)
    truncated: bool  # the thinking was never closed
    answer_pred: str | None

    def as_log(self) -> dict[str, float]:
        """Float components for loggers (unscorable samples log accuracy 0 and unscorable 1)."""
        return {
            "accuracy": self.accuracy or 0.0,
            "budget_reward": self.budget_reward,
            "thinking_tokens": float(self.length),
            "over_budget": float(self.over_budget),
            "truncated": float(self.truncated),
            "unscorable": float(self.accuracy is None),
        }


def is_over_budget(length: int, budget: int | None, cfg: RewardConfig) -> bool:
    return budget is not None and length > budget * (1 + cfg.tau)


def budget_reward(length: int, budget: int | None, cfg: RewardConfig) -> float:
    """R_bud for L tokens under budget B (1.0 for an unbudgeted sample)."""
    if budget is None:
        return 1.0
    budget = max(budget, 1)
    limit = budget * (1 + cfg.tau)
    if length > limit:
        if cfg.shape == "hard":
            return 0.0
        return max(0.0, 1.0 - cfg.alpha * (length - limit) / budget)  # 0 at L = B*(1+tau+1/alpha)
    if cfg.shape == "target":
        floor = cfg.target_floor * budget
        return min(1.0, length / floor)
    return 1.0


def combine_reward(accuracy: float | None, r_bud: float, over_budget: bool, cfg: RewardConfig) -> float | None:
    if accuracy is None:
        return None
    if over_budget and cfg.over_budget_value is not None:
        return float(cfg.over_budget_value)
    if cfg.combine == "additive":
        return accuracy + r_bud
    return accuracy * r_bud


def score_completion(
    completion: str,
    gold: str,
    budget: int | None,
    length: int,
    *,
    budget_cfg: BudgetConfig,
    reward_cfg: RewardConfig,
    verify_cfg: VerifyConfig,
    choices: Sequence[str] | None = None,
    opened: bool = False,
) -> RewardParts:
    """The reward of one completion whose budget tokens (`length`) are already counted."""
    split = split_thinking(completion, budget_cfg, opened)
    pred = None if split.truncated else extract_answer(split.answer, choices)
    correct = check_answer(pred, gold, verify_cfg, choices)
    accuracy = None if correct is None else float(correct)
    r_bud = budget_reward(length, budget, reward_cfg)
    over = is_over_budget(length, budget, reward_cfg)
    return RewardParts(
        reward=combine_reward(accuracy, r_bud, over, reward_cfg),
        accuracy=accuracy,
        budget_reward=r_bud,
        length=length,
        budget=budget,
        over_budget=over,
        truncated=split.truncated,
        answer_pred=pred,
    )


def score_completions(
    completions: Sequence[str],
    golds: Sequence[str],
    budgets: Sequence[int | None],
    config: BardConfig,
    tokenizer=None,
    *,
    choices: Sequence[Sequence[str] | None] | None = None,
    opened: bool | Sequence[bool] = False,
    lengths: Sequence[int] | None = None,
) -> list[RewardParts]:
    """Rewards of a batch. Budget tokens are counted with `tokenizer` (default `config.budget.tokenizer`)
    in one batched call, unless `lengths` gives them (for instance counted from generated ids)."""
    n = len(completions)
    flags = [opened] * n if isinstance(opened, bool) else list(opened)
    if lengths is None:
        tokenizer = config.budget.tokenizer if tokenizer is None else tokenizer
        lengths = count_budget_tokens(completions, tokenizer, config.budget, flags)
    choices = [None] * n if choices is None else choices
    return [
        score_completion(
            c,
            g,
            as_budget(b),
            n_tokens,
            budget_cfg=config.budget,
            reward_cfg=config.reward,
            verify_cfg=config.verify,
            choices=ch,
            opened=o,
        )
        for c, g, b, n_tokens, ch, o in zip(completions, golds, budgets, lengths, choices, flags, strict=True)
    ]


def as_budget(value) -> int | None:
    """A budget cell as int or None (dataframes turn a missing integer into NaN)."""
    if value is None or value != value:
        return None
    return int(value)


def reward_label(answer: str, budget: int | None, choices: Sequence[str] | None = None) -> str:
    """The label column of an OpenRLHF prompt row: JSON that the generated reward file reads."""
    label = {"answer": str(answer), "budget": as_budget(budget)}
    if as_choices(choices):
        label["choices"] = list(as_choices(choices))
    return json.dumps(label, ensure_ascii=False)


# ---------------------------------------------------------------- TRL


def trl_reward_func(config: BardConfig, tokenizer=None):
    """A reward function for TRL's GRPOTrainer (`reward_funcs=[trl_reward_func(config, tokenizer)]`).

    TRL calls it as `f(prompts=..., completions=..., completion_ids=..., **columns)`, with every
    dataset column as a keyword list: this reads `answer`, `budget` (None or missing: parsed from
    the prompt) and optionally `choices`. `tokenizer`: the trainer's processing class (or anything
    `tokenizers.as_counter` takes; default `config.budget.tokenizer`). Returns one float per
    completion, None where the gold cannot be parsed (TRL then leaves the sample out of the group
    baseline).

    Token counts come from `completion_ids`, the ids the policy really generated: the thinking is
    located by the ids of the think tags (when each tag is one token of `tokenizer`, as in Qwen3)
    and the ids between them are counted; EOS/padding ids are not. The answer is read from those
    ids decoded with special tokens kept, because TRL's own `completions` text drops special
    tokens (a tokenizer may mark `<think>` special) and may move the thinking out of the content.
    Without `completion_ids`, the completion text is counted like everywhere else.
    Components are logged through TRL's `log_metric` / `log_extra` hooks when it passes them.
    """
    from bard_core.tokenizers import as_counter

    counter = as_counter(config.budget.tokenizer if tokenizer is None else tokenizer)
    open_id = counter.token_id(config.budget.think_open)
    close_id = counter.token_id(config.budget.think_close)
    end_ids = frozenset(
        i for i in (getattr(tokenizer, "eos_token_id", None), getattr(tokenizer, "pad_token_id", None)) if i is not None
    )
    ids_exact = open_id is not None and close_id is not None

    def reward(prompts, completions, completion_ids=None, answer=None, budget=None, choices=None, **kwargs):
        if answer is None:
            raise ValueError("bard_reward: the dataset needs an `answer` column")
        n = len(completions)
        budgets = [as_budget(b) for b in budget] if budget is not None else [None] * n
        budgets = [
            b if b is not None else parse_budget(p, config.budget) for b, p in zip(budgets, prompts, strict=True)
        ]
        opened = [prompt_opens_thinking(p, config.budget) for p in prompts]
        if completion_ids is not None:
            texts = [counter.decode(ids) for ids in completion_ids]
            if ids_exact:
                lengths = [
                    count_budget_tokens_from_ids(ids, config.budget, open_id, close_id, end_ids, o)
                    for ids, o in zip(completion_ids, opened, strict=True)
                ]
            else:
                lengths = count_budget_tokens(texts, counter, config.budget, opened)
        else:
            texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
            lengths = None
        parts = score_completions(
            texts, answer, budgets, config, counter, choices=choices, opened=opened, lengths=lengths
        )
        _log_to_trl(parts, kwargs.get("log_metric"), kwargs.get("log_extra"))
        return [p.reward for p in parts]

    reward.__name__ = reward.__qualname__ = "bard_reward"  # TRL logs each reward function under its __name__
    return reward


def _log_to_trl(parts: list[RewardParts], log_metric, log_extra) -> None:
    if not parts:
        return
    logs = [p.as_log() for p in parts]
    if log_metric is not None:
        for key in logs[0]:
            log_metric(f"bard/{key}", sum(entry[key] for entry in logs) / len(logs))
    if log_extra is not None:
        log_extra("budget_tokens", [p.length for p in parts])
        log_extra("correct", [p.accuracy for p in parts])
