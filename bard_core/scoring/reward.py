"""The BARD reward R = R_acc x R_bud of one completion (DESIGN.md, "The thinking budget").

A sample whose gold cannot be parsed has `accuracy` None and `reward` None: it is skipped, not scored 0.
`reward_label` writes the JSON label of an RL prompt row and `read_label` reads it back (OpenRLHF's reward
file gets it as its `labels`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import within
from .answers import as_choices
from .verify import grade

if TYPE_CHECKING:
    from bard_core.config import BudgetConfig, RewardConfig, VerifyConfig


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


def budget_reward(length: int, budget: int | None, cfg: RewardConfig) -> float:
    """R_bud for L tokens under budget B (1.0 for an unbudgeted sample)."""
    if budget is None:
        return 1.0
    budget = max(budget, 1)
    if not within(length, budget, cfg.tau):
        if cfg.shape == "hard":
            return 0.0
        over = length - budget * (1 + cfg.tau)
        return max(0.0, 1.0 - cfg.alpha * over / budget)  # 0 at L = B*(1+tau+1/alpha)
    if cfg.shape == "target":
        return min(1.0, length / (cfg.target_floor * budget))
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
    graded = grade(completion, gold, budget_cfg=budget_cfg, verify_cfg=verify_cfg, choices=choices, opened=opened)
    accuracy = None if graded.correct is None else float(graded.correct)
    r_bud = budget_reward(length, budget, reward_cfg)
    over = budget is not None and not within(length, budget, reward_cfg.tau)
    return RewardParts(
        reward=combine_reward(accuracy, r_bud, over, reward_cfg),
        accuracy=accuracy,
        budget_reward=r_bud,
        length=length,
        budget=budget,
        over_budget=over,
        truncated=graded.truncated,
        answer_pred=graded.answer_pred,
    )


def as_budget(value) -> int | None:
    """A budget cell as int or None (dataframes turn a missing integer into NaN)."""
    if value is None or value != value:
        return None
    return int(value)


def reward_label(answer: str, budget: int | None, choices: Sequence[str] | None = None) -> str:
    """The label column of an OpenRLHF prompt row: JSON {"answer", "budget", "choices" (optional)}."""
    label = {"answer": str(answer), "budget": as_budget(budget)}
    if as_choices(choices):
        label["choices"] = list(as_choices(choices))
    return json.dumps(label, ensure_ascii=False)


def read_label(label: str | dict) -> tuple[str, int | None, list[str] | None]:
    """(answer, budget, choices) from a `reward_label` (JSON text, or already a dict)."""
    meta = json.loads(label) if isinstance(label, str) else dict(label)
    return str(meta["answer"]), as_budget(meta.get("budget")), meta.get("choices")
