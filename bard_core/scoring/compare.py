"""Normalisation and the fast path: deciding answer pairs without math-verify where that is safe.

Every quick verdict uses one tolerance (`far_apart`): values are called different only when they differ far
beyond math-verify's own rounding, so the fast path and math-verify never disagree (tested on the golden table).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bard_core.config import VerifyConfig

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


def far_apart(x, y, float_rounding: int) -> bool:
    """Two values (Fractions, exactly; or floats/complex) that differ beyond math-verify's rounding of
    `float_rounding` decimals, so it could only call them different. An infinity is far from all but itself."""
    if not isinstance(x, Fraction) and (math.isinf(abs(x)) or math.isinf(abs(y))):
        return x != y
    tolerance = Fraction(1, 10 ** max(float_rounding - 2, 0))
    return abs(x - y) > tolerance * max(1, abs(x), abs(y))


def cheap_compare(pred: Normal, gold: Normal, cfg: VerifyConfig) -> bool | None:
    """True/False when spelling or exact values decide (different: `far_apart`); None when math-verify must."""
    if pred.text == gold.text:
        return True
    if pred.number is None or gold.number is None:
        return None
    pairs = [(p, g) for p in _values(pred) for g in _values(gold)]
    if any(p == g for p, g in pairs):
        return True
    if all(far_apart(p, g, cfg.float_rounding) for p, g in pairs):
        return False
    return None


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
    if len(a) != len(b):  # math-verify may compare a list with a value as a set: different only if disjoint
        return all(far_apart(x, y, float_rounding) for x in a for y in b)
    unmatched = list(b)
    for x in a:
        match = next((i for i, y in enumerate(unmatched) if not far_apart(x, y, float_rounding)), None)
        if match is None:
            return True
        unmatched.pop(match)
    return False
