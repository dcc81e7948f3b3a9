"""The thinking span of a completion and the budget written in a prompt: the rules scoring needs.

A budget counts the tokens between `<think>` and `</think>` (or the whole completion, by config); the
answer is read only after the thinking.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bard_core.config import BudgetConfig


@dataclass(frozen=True)
class ThinkSplit:
    thinking: str  # the raw text between the tags (what a thinking budget counts); "" when none
    answer: str  # the text after the closing tag: the only place an answer is read from
    truncated: bool  # thinking was opened but never closed: no answer


def split_thinking(completion: str, cfg: BudgetConfig, opened: bool = False) -> ThinkSplit:
    """Split a completion into thinking and answer.

    `opened`: the prompt itself ended with the opening tag (some chat templates add it), so the
    completion starts inside the thinking. Thinking runs from the first opening tag (or the start)
    to the last closing tag, so every thinking block counts and the answer comes after all of them.
    A missing closing tag means the thinking was cut off: `truncated`, and the answer is empty.
    """
    open_tag, close_tag = cfg.think_open, cfg.think_close
    close = completion.rfind(close_tag)
    start = completion.find(open_tag)
    if start >= 0 and (close < 0 or start < close):
        begin = start + len(open_tag)
    elif opened or close >= 0:
        begin = 0
    else:
        return ThinkSplit(thinking="", answer=completion, truncated=False)
    if close < begin:
        return ThinkSplit(thinking=completion[begin:], answer="", truncated=True)
    return ThinkSplit(thinking=completion[begin:close], answer=completion[close + len(close_tag) :], truncated=False)


def budget_span(completion: str, cfg: BudgetConfig, opened: bool = False) -> str:
    """The text a budget counts: the thinking (`cfg.count == "thinking"`) or the whole completion."""
    return completion if cfg.count == "completion" else split_thinking(completion, cfg, opened).thinking


def prompt_opens_thinking(prompt: str | list[dict], cfg: BudgetConfig) -> bool:
    """Whether a (chat-templated) prompt string ends inside an opened thinking block."""
    return isinstance(prompt, str) and prompt.rstrip().endswith(cfg.think_open)


@lru_cache(maxsize=16)
def _budget_pattern(template: str) -> re.Pattern:
    before, _, after = template.partition("{budget}")
    return re.compile(re.escape(before) + r"(\d+)" + re.escape(after))


def parse_budget(prompt: str | list[dict], cfg: BudgetConfig) -> int | None:
    """The budget written in a prompt (the last match of the template), or None if it carries none.

    `prompt` is a string (plain or already chat-templated) or a list of chat messages, in which
    case the last user message is read.
    """
    if not isinstance(prompt, str):
        users = [m.get("content") for m in prompt if m.get("role") == "user"]
        prompt = users[-1] if users and isinstance(users[-1], str) else ""
    matches = _budget_pattern(cfg.template).findall(prompt)
    return int(matches[-1]) if matches else None
