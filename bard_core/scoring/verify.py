"""Answer verification: `check_answer(pred, gold, cfg)` is True, False, or None when the gold itself cannot
be parsed (such samples are skipped, never scored 0); `grade` reads and checks a whole completion.

The fast path (`compare`) decides most pairs; math-verify (1.5-16 ms a call) runs only when it cannot. The
gold is parsed once per process (cached). math-verify always runs with `parsing_timeout=None,
timeout_seconds=None`: its timeouts use signals, which fail outside the main thread (Ray workers, OpenRLHF's
reward threads). Without a timeout, sympy can hang on answers such as `10^{10^{10}}`, so predictions that are
too long or contain huge powers are scored wrong before they reach it (limits in `VerifyConfig`).
math-verify and sympy are imported inside the functions that need them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from .answers import LETTER, as_choices, extract_answer
from .compare import Normal, cheap_compare, clearly_different, constant_values, far_apart, normalize
from .thinking import split_thinking

if TYPE_CHECKING:
    from bard_core.config import BudgetConfig, VerifyConfig


@dataclass(frozen=True)
class Gold:
    normal: Normal
    letter: str | None  # multiple choice: the correct letter


@lru_cache(maxsize=65536)
def parse_gold(gold: str, choices: tuple[str, ...] | None = None) -> Gold | None:
    """The gold answer parsed once (cached per process); None if it cannot be parsed at all.

    A number or a constant (\\frac{\\sqrt{3}}{2}, (1, \\pi)) needs no math-verify parse here (it is made,
    and cached, only if a prediction ever needs math-verify); any other gold must parse now, or it
    is unscorable.
    """
    normal = normalize(gold)
    if not normal.text:
        return None
    if choices:
        letter = choice_letter(gold, choices)
        return Gold(normal=normal, letter=letter) if letter else None
    if normal.number is None and constant_values(normal.text) is None and not _mv_gold(gold):
        return None
    return Gold(normal=normal, letter=None)


def choice_letter(answer: str, choices: Sequence[str]) -> str | None:
    """A multiple-choice answer as its letter: "B", "(b)", "\\text{(B)}", or the text of a choice."""
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[: len(choices)]
    m = LETTER.match(answer.strip())
    if m and m.group(1).upper() in letters:
        return m.group(1).upper()
    target = normalize(answer).text.lower()
    for letter, choice in zip(letters, choices, strict=False):  # at most 26 lettered choices
        if target and normalize(str(choice)).text.lower() == target:
            return letter
    return None


def mv_parse(text: str) -> tuple:
    """math-verify's parse of one answer (no timeout: safe in threads)."""
    from math_verify import parse

    return tuple(parse("\\boxed{" + text + "}", parsing_timeout=None))


@lru_cache(maxsize=65536)
def _mv_gold(gold: str) -> tuple:
    return mv_parse(gold)


def _safe_to_verify(parsed: tuple, max_exponent: int, max_symbolic_exponent: int) -> bool:
    """False for expressions that sympy may take minutes or forever to compare (no timeout is possible)."""
    from sympy import Basic, Pow, preorder_traversal

    for expr in parsed:
        if not isinstance(expr, Basic):
            continue
        for node in preorder_traversal(expr):
            if not isinstance(node, Pow):
                continue
            exponent = node.exp
            if exponent.has(Pow) and not exponent.free_symbols:
                return False  # a power tower such as 10^{10^{10}}
            if exponent.is_Number:
                limit = max_symbolic_exponent if node.base.free_symbols else max_exponent
                if abs(exponent) > limit:
                    return False
    return True


def _clearly_different_numbers(a, b, float_rounding: int) -> bool:
    """Both parsed answers are constants (\\sqrt{72}, 3\\pi/2, 1+2i) whose values differ far beyond
    math-verify's rounding, so it could only say False. Percent answers are excluded by the caller
    (math-verify accepts 10% as both 10 and 0.1)."""
    from sympy import Expr

    if not (isinstance(a, Expr) and isinstance(b, Expr) and a.is_number and b.is_number):
        return False
    try:
        x, y = complex(a.evalf(30)), complex(b.evalf(30))
    except (TypeError, ValueError, ArithmeticError):
        return False
    return far_apart(x, y, float_rounding)


def gold_is_parseable(gold: str, choices: Sequence[str] | None = None) -> bool:
    """Whether a gold answer can be graded at all (rows failing this are skipped, never scored 0)."""
    return parse_gold(str(gold), as_choices(choices)) is not None


def check_answer(pred: str | None, gold: str, cfg: VerifyConfig, choices: Sequence[str] | None = None) -> bool | None:
    """Is the predicted answer equivalent to the gold? None when the gold cannot be parsed."""
    gold, choices = str(gold), as_choices(choices)
    g = parse_gold(gold, choices)
    if g is None:
        return None
    if pred is None or not pred.strip() or len(pred) > cfg.max_answer_chars:
        return False
    if g.letter is not None:
        return choice_letter(pred, choices) == g.letter
    normal = normalize(pred)
    decided = cheap_compare(normal, g.normal, cfg)
    if decided is not None:
        return decided
    if clearly_different(pred, gold, normal, g.normal, cfg.float_rounding):
        return False
    limits = (cfg.float_rounding, cfg.numeric_precision, cfg.max_exponent, cfg.max_symbolic_exponent)
    return mv_equal(pred, gold, limits)


@lru_cache(maxsize=65536)
def mv_equal(pred: str, gold: str, limits: tuple[int, int, int, int]) -> bool:
    """math-verify's verdict, cached: the samples of one GRPO group often repeat the same answers.

    `limits`: (float_rounding, numeric_precision, max_exponent, max_symbolic_exponent) of VerifyConfig.
    """
    from math_verify import verify

    float_rounding, numeric_precision, max_exponent, max_symbolic_exponent = limits
    gold_parsed, pred_parsed = _mv_gold(gold), mv_parse(pred)
    if not gold_parsed or not pred_parsed:
        return False
    for parsed in (pred_parsed, gold_parsed):
        if not _safe_to_verify(parsed, max_exponent, max_symbolic_exponent):
            return False
    if "%" not in pred + gold and _clearly_different_numbers(pred_parsed[0], gold_parsed[0], float_rounding):
        return False  # skips verify's symbolic fallbacks (about half of its cost) for wrong numeric answers
    verdict = verify(
        list(gold_parsed),
        list(pred_parsed),
        float_rounding=float_rounding,
        numeric_precision=numeric_precision,
        timeout_seconds=None,
    )
    return bool(verdict)


@dataclass(frozen=True)
class Grade:
    answer_pred: str | None
    correct: bool | None
    truncated: bool


def grade(
    completion: str,
    gold: str,
    *,
    budget_cfg: BudgetConfig,
    verify_cfg: VerifyConfig,
    choices: Sequence[str] | None = None,
    opened: bool = False,
) -> Grade:
    """Extract the answer after the thinking and check it against the gold."""
    split = split_thinking(completion, budget_cfg, opened)
    pred = None if split.truncated else extract_answer(split.answer, choices)
    return Grade(answer_pred=pred, correct=check_answer(pred, gold, verify_cfg, choices), truncated=split.truncated)
