"""The BARD reward in-process: batches counted with the student's tokenizer, and TRL's GRPOTrainer.

- `score_completions(...)`: a batch, counting budget tokens with the student's tokenizer.
- `trl_reward_func(config, tokenizer)`: a reward function for TRL's GRPOTrainer.

The rules themselves (R_bud, the combination, one completion's reward, the RL label) live in
`bard_core.scoring.reward`, which the OpenRLHF reward file ships too. A sample whose gold cannot be
parsed has reward None: TRL 1.16 excludes None rewards from the group baseline and gives them no advantage.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from bard_core.budget import count_budget_tokens, count_budget_tokens_from_ids
from bard_core.scoring.reward import RewardParts, as_budget, score_completion
from bard_core.scoring.thinking import parse_budget, prompt_opens_thinking
from bard_core.student import template_opens_thinking

if TYPE_CHECKING:
    from bard_core.config import BardConfig


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
    # TRL passes conversational prompts as messages: whether they open the thinking is the template's to say.
    template_opens = template_opens_thinking(tokenizer, config.budget)

    def reward(prompts, completions, completion_ids=None, answer=None, budget=None, choices=None, **kwargs):
        if answer is None:
            raise ValueError("bard_reward: the dataset needs an `answer` column")
        n = len(completions)
        budgets = [as_budget(b) for b in budget] if budget is not None else [None] * n
        budgets = [
            b if b is not None else parse_budget(p, config.budget) for b, p in zip(budgets, prompts, strict=True)
        ]
        opened = [prompt_opens_thinking(p, config.budget) if isinstance(p, str) else template_opens for p in prompts]
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
