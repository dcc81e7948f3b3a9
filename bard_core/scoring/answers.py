"""Reading the final answer out of a completion's answer text (after the thinking)."""

from __future__ import annotations

import re
from collections.abc import Sequence


def last_boxed(text: str) -> str | None:
    """The content of the last \\boxed{...} or \\fbox{...} in `text`, with nested braces; None if absent."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    brace = text.find("{", start)
    if brace < 0:
        return None
    depth = 0
    for i in range(brace, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[brace + 1 : i].strip()
    return None


_GSM8K_FINAL = re.compile(r"####\s*(.+?)\s*$", re.S)


def gsm8k_gold(solution: str) -> str | None:
    """GSM8K's gold: the text after `####`, commas dropped ("#### 1,234" -> "1234")."""
    m = _GSM8K_FINAL.search(solution)
    return m.group(1).replace(",", "").strip() if m else None


_GSM8K_PRED = re.compile(r"####\s*([^\n]+)")
_ANSWER_IS = re.compile(r"(?:final answer|the answer)\s*(?:is|:)\s*:?\s*([^\n]+)", re.I)
_ANSWER_LABEL = re.compile(r"^[\s*#]*answer[\s*]*:\s*([^\n]+)", re.I | re.M)
_SENTENCE_END = re.compile(r"\.\s")
LETTER = re.compile(r"^[\s(\[*]*(?:\\text\{\s*\(?)?([A-Za-z])(?:\)?\s*\})?[)\].:*\s]*$")


def extract_answer(answer_text: str, choices: Sequence[str] | None = None) -> str | None:
    """The final answer in the text after the thinking, or None.

    In order: the last \\boxed{} / \\fbox{} (an empty box gives ""), a GSM8K `#### N`, the last
    "the answer is ..." / "final answer: ..." / "Answer: ...", and for multiple choice a lone letter.
    Pass only the text after the thinking (`thinking.split_thinking(...).answer`): an answer written only
    inside the thinking does not count.
    """
    choices = as_choices(choices)
    boxed = last_boxed(answer_text)
    if boxed is not None:
        return boxed
    for pattern in (_GSM8K_PRED, _ANSWER_IS, _ANSWER_LABEL):
        found = pattern.findall(answer_text)
        if found:
            phrase = found[-1]
            while (inner := _ANSWER_IS.search(phrase)) is not None:  # "Final answer: the answer is 5"
                phrase = inner.group(1)
            return _clean_phrase(phrase)
    text = answer_text.strip()
    if choices and LETTER.match(text):
        return text
    return None


def _clean_phrase(text: str) -> str:
    """ "$\\frac{1}{2}$. I hope it is correct." -> "\\frac{1}{2}": the first sentence, without markdown,
    math delimiters or its period (a period followed by a space ends it; "3.5" is kept)."""
    text = _SENTENCE_END.split(text.strip(), maxsplit=1)[0]
    text = text.strip().strip("*").strip()
    text = text.rstrip(".").strip()
    if text.startswith("$") and text.endswith("$"):
        text = text.strip("$")
    if text.startswith("\\(") and text.endswith("\\)"):
        text = text[2:-2]
    return text.strip()


def as_choices(choices: Sequence[str] | None) -> tuple[str, ...] | None:
    """Multiple-choice options as a hashable tuple; None for an open question (None or empty).
    Accepts any sequence, including the numpy arrays a Parquet list column becomes in pandas."""
    if choices is None or len(choices) == 0:
        return None
    return tuple(str(c) for c in choices)
