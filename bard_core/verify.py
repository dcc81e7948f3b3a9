"""Answer extraction and verification (the method core; see DESIGN.md "The thinking budget").

`check_answer(pred, gold, cfg)` returns True, False, or None when the gold itself cannot be parsed
(such samples are skipped, never scored 0). A cheap exact/numeric comparison decides most pairs;
math-verify (1.5-16 ms a call) runs only when that cannot decide. The gold is parsed once per
process (cached). math-verify always runs with `parsing_timeout=None, timeout_seconds=None`: its
timeouts use signals, which fail outside the main thread (Ray workers, OpenRLHF's reward threads).
Without a timeout, sympy can hang on answers such as `10^{10^{10}}`, so predictions that are too
long or contain huge powers are scored wrong before they reach it (limits in `VerifyConfig`).

The extraction and comparison functions are also copied verbatim into the generated OpenRLHF reward
file (`bard_core/reward_file.py`), so this module uses only the standard library at module level
(math-verify and sympy are imported inside the functions that need them).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import TYPE_CHECKING

from bard_core.budget import split_thinking

if TYPE_CHECKING:
    from bard_core.config import BudgetConfig, VerifyConfig


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


# ---------------------------------------------------------------- extraction

_GSM8K_PRED = re.compile(r"####\s*([^\n]+)")
_ANSWER_IS = re.compile(r"(?:final answer|the answer)\s*(?:is|:)\s*:?\s*([^\n]+)", re.I)
_ANSWER_LABEL = re.compile(r"^[\s*#]*answer[\s*]*:\s*([^\n]+)", re.I | re.M)
_SENTENCE_END = re.compile(r"\.\s")
_LETTER = re.compile(r"^[\s(\[*]*(?:\\text\{\s*\(?)?([A-Za-z])(?:\)?\s*\})?[)\].:*\s]*$")


def extract_answer(answer_text: str, choices: Sequence[str] | None = None) -> str | None:
    """The final answer in the text after the thinking, or None.

    In order: the last \\boxed{} / \\fbox{} (an empty box gives ""), a GSM8K `#### N`, the last
    "the answer is ..." / "final answer: ..." / "Answer: ...", and for multiple choice a lone letter.
    Pass only the text after the thinking (`split_thinking(...).answer`): an answer written only
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
    if choices and _LETTER.match(text):
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


# ---------------------------------------------------------------- cheap comparison

_SPACING = re.compile(r"\\[,!;: ]|\\left(?![a-z])|\\right(?![a-z])|\\displaystyle|\s+")
_TEXT = re.compile(r"\\(?:text|textbf|textrm|mbox|mathrm|mathbf)\{([^{}]*)\}")
_DEGREES = re.compile(r"\^\{?\\circ\}?")
_FRAC_DIGITS = re.compile(r"\\frac(\d)(\d)")
_SQRT_CHAR = re.compile(r"\\sqrt(\w)")
_THOUSANDS = re.compile(r"^[+-]?\d{1,3}(,\d{3})+(\.\d+)?$")
_DECIMAL = re.compile(r"^[+-]?(\d+(\.\d+)?|\.\d+)$")
_LATEX_FRAC = re.compile(r"^([+-]?)\\frac\{([+-]?\d+)\}\{([+-]?\d+)\}$")
_SLASH_FRAC = re.compile(r"^([+-]?\d+)/(\d+)$")
_UNIT_TAIL = re.compile(r"^(.*\d)\\(?:text|mbox|mathrm)\{[^{}]*\}$")


@dataclass(frozen=True)
class Normal:
    text: str  # canonical spelling for exact comparison
    number: Fraction | None  # the exact value when the answer is a plain number
    percent: bool  # written with a percent sign (math-verify accepts both 10 and 0.1 for 10%)


def normalize(answer: str) -> Normal:
    """Spelling-only normalisation: spacing, \\left/\\right, \\dfrac, \\text{}, $, degrees, %, commas."""
    s = answer.strip().replace("\u2212", "-").replace("{,}", ",")
    s = s.replace("\\$", "").replace("$", "").replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = _SPACING.sub("", s)
    s = _DEGREES.sub("", s)
    percent = s.endswith("%")
    s = s.replace("\\%", "").replace("%", "")
    unit = _UNIT_TAIL.match(s)  # "5\text{cm}" -> "5", as math-verify drops units
    s = unit.group(1) if unit else _TEXT.sub(r"\1", s)
    s = _FRAC_DIGITS.sub(r"\\frac{\1}{\2}", s)
    s = _SQRT_CHAR.sub(r"\\sqrt{\1}", s)
    s = s.rstrip(".")
    return Normal(text=s, number=_to_number(s), percent=percent)


def _to_number(s: str) -> Fraction | None:
    if _THOUSANDS.match(s):
        s = s.replace(",", "")
    if _DECIMAL.match(s):
        return Fraction(s)
    m = _LATEX_FRAC.match(s)
    if m and int(m.group(3)) != 0:
        value = Fraction(int(m.group(2)), int(m.group(3)))
        return -value if m.group(1) == "-" else value
    m = _SLASH_FRAC.match(s)
    if m and int(m.group(2)) != 0:
        return Fraction(int(m.group(1)), int(m.group(2)))
    return None


def _values(n: Normal) -> list[Fraction]:
    return [n.number, n.number / 100] if n.percent else [n.number]


def cheap_compare(pred: Normal, gold: Normal, cfg: VerifyConfig) -> bool | None:
    """True/False when spelling or exact values decide; None when math-verify must.

    Numbers are called different only when they differ far beyond math-verify's own rounding
    (`float_rounding` decimals), so the two never disagree (tested on the golden table).
    """
    if pred.text == gold.text:
        return True
    if pred.number is None or gold.number is None:
        return None
    pairs = [(p, g) for p in _values(pred) for g in _values(gold)]
    if any(p == g for p, g in pairs):
        return True
    tolerance = Fraction(1, 10 ** max(cfg.float_rounding - 2, 0))
    if all(abs(p - g) > tolerance * max(1, abs(p), abs(g)) for p, g in pairs):
        return False
    return None


# ---------------------------------------------------------------- constants without math-verify

_CONSTANT_TOKEN = re.compile(r"\d+(?:\.\d+)?|\.\d+|\\frac|\\sqrt|\\pi|\\infty|\\cdot|\\times|[-+*/^(){}\[\],]")
# Commands after which letters are words or set notation, not variables (units, text, membership).
_WORDY = re.compile(r"\\(?:text|textbf|textrm|mbox|mathrm|mathbf|operatorname|begin|in|cup|cap|pm|mp)(?![a-z])|=|<|>")
_VARIABLE = re.compile(r"(?<!\\)(?<![a-zA-Z])[a-zA-Z]")


def constant_values(text: str) -> list[complex] | None:
    """The values of a normalised answer made only of numbers, + - * / ^, \\frac, \\sqrt, \\pi and
    brackets, as a list (one per top-level comma, for tuples, intervals and sets); None for anything
    else (variables, other commands, thousands separators), which is left to math-verify."""
    tokens = _CONSTANT_TOKEN.findall(text)
    if "".join(tokens) != text or not tokens:
        return None
    if tokens[0] in "([{" and tokens[-1] in ")]}" and len(tokens) > 2:
        depth = 0
        for i, tok in enumerate(tokens):
            depth += (tok in "([{") - (tok in ")]}")
            if depth == 0 and i < len(tokens) - 1:
                break
        else:  # one bracket pair encloses everything: it lists the elements
            tokens = tokens[1:-1]
    parts, depth, current = [], 0, []
    for tok in tokens:
        depth += (tok in "([{") - (tok in ")]}")
        if tok == "," and depth == 0:
            parts.append(current)
            current = []
        else:
            current.append(tok)
    parts.append(current)
    if len(parts) > 1 and any(len(p) == 1 and len(p[0]) == 3 and p[0].isdigit() for p in parts[1:]):
        return None  # "1,000": a thousands separator, not a pair
    values = []
    for part in parts:
        parser = _ConstantParser(part)
        try:
            value = parser.expr()
        except (IndexError, ValueError, ZeroDivisionError, OverflowError):
            return None
        if parser.pos != len(part) or math.isnan(value.real) or math.isnan(value.imag):
            return None
        values.append(value)
    return values


class _ConstantParser:
    """Recursive descent over constant tokens, with implicit multiplication (2\\sqrt{3}, 3\\pi)."""

    def __init__(self, tokens: list[str]):
        self.tokens, self.pos = tokens, 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        tok = self.tokens[self.pos]
        if expected is not None and tok != expected:
            raise ValueError(tok)
        self.pos += 1
        return tok

    def expr(self) -> complex:
        value = self.term()
        while self.peek() in ("+", "-"):
            value = value + self.term() if self.take() == "+" else value - self.term()
        return value

    def term(self) -> complex:
        value = self.unary()
        while True:
            tok = self.peek()
            if tok in ("*", "\\cdot", "\\times"):
                self.take()
                value *= self.unary()
            elif tok == "/":
                self.take()
                value /= self.unary()
            elif tok is not None and (tok[0].isdigit() or tok[0] == "." or tok in ("\\frac", "\\sqrt", "\\pi", "(", "{")):
                if tok == "\\frac" and self.tokens[self.pos - 1][0].isdigit():
                    raise ValueError("1\\frac{4}{5} is a mixed number to math-verify: leave it to it")
                value *= self.power()
            else:
                return value

    def unary(self) -> complex:
        if self.peek() in ("+", "-"):
            return -self.unary() if self.take() == "-" else self.unary()
        return self.power()

    def power(self) -> complex:
        base = self.atom()
        if self.peek() == "^":
            self.take()
            exponent = self.group() if self.peek() == "{" else self.atom()
            if abs(exponent) > 64:
                raise ValueError("exponent too large for a quick check")
            return complex(base**exponent)
        return base

    def group(self) -> complex:
        self.take("{")
        value = self.expr()
        self.take("}")
        return value

    def atom(self) -> complex:
        tok = self.take()
        if tok[0].isdigit() or tok[0] == ".":
            return complex(float(tok))
        if tok == "\\pi":
            return complex(math.pi)
        if tok == "\\infty":
            return complex(math.inf)
        if tok == "\\frac":
            return self.group() / self.group()
        if tok == "\\sqrt":
            root = 2.0
            if self.peek() == "[":
                self.take()
                root = self.expr()
                self.take("]")
            return complex(self.group() ** (1 / root))
        if tok == "(":
            value = self.expr()
            self.take(")")
            return value
        if tok == "{":
            self.pos -= 1
            return self.group()
        raise ValueError(tok)


def has_variables(text: str) -> bool:
    """An answer with a variable (x, n, a...) and nothing that makes letters mean something else:
    no text, units, equations or set notation, and not e or i, which math-verify reads as constants."""
    if _WORDY.search(text):
        return False
    names = _VARIABLE.findall(re.sub(r"\\[a-zA-Z]+", " ", text))
    return any(n not in "eiEI" for n in names)


def clearly_different(pred: str, gold: str, pred_normal: Normal, gold_normal: Normal, float_rounding: int) -> bool:
    """math-verify could only say False, so it is not asked (saving its ~15 ms LaTeX parse and comparison):
    both answers are constants (or lists of them: tuples, intervals, sets) and no value of one is close to
    any value of the other beyond math-verify's rounding; or one is a constant and the other has a variable
    (read in the raw answer, where units and text are still marked)."""
    if pred_normal.percent or gold_normal.percent:
        return False  # math-verify accepts 10% as both 10 and 0.1
    a, b = constant_values(pred_normal.text), constant_values(gold_normal.text)
    if a is None or b is None:
        return (a is not None and has_variables(gold)) or (b is not None and has_variables(pred))
    tolerance = 10.0 ** -max(float_rounding - 2, 0)

    def close(x: complex, y: complex) -> bool:
        if math.isinf(abs(x)) or math.isinf(abs(y)):
            return x == y
        return abs(x - y) <= tolerance * max(1.0, abs(x), abs(y))

    if len(a) != len(b):  # math-verify may compare a list with a value as a set: different only if disjoint
        return not any(close(x, y) for x in a for y in b)
    unmatched = list(b)
    for x in a:
        match = next((i for i, y in enumerate(unmatched) if close(x, y)), None)
        if match is None:
            return True
        unmatched.pop(match)
    return False


# ---------------------------------------------------------------- gold, multiple choice, math-verify


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
    m = _LETTER.match(answer.strip())
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
    tolerance = 10.0 ** -max(float_rounding - 2, 0)
    return abs(x - y) > tolerance * max(1.0, abs(x), abs(y))


def as_choices(choices: Sequence[str] | None) -> tuple[str, ...] | None:
    """Multiple-choice options as a hashable tuple; None for an open question (None or empty).
    Accepts any sequence, including the numpy arrays a Parquet list column becomes in pandas."""
    if choices is None or len(choices) == 0:
        return None
    return tuple(str(c) for c in choices)


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
