"""The compression audit, by hand."""

import pytest

from bard_core.audit import audit, audit_row, equations, numbers

ORIGINAL = "We have 12 apples and 7 more. 12 + 7 = 19. Check: 19 - 7 = 12. Then 19 * 2 = 38."
QUESTION = "Tom has 12 apples, gets 7, then doubles them. How many?"


def test_numbers_and_equations():
    assert numbers("x2 has 3.5 and 10, v1.2 -4") == {"3.5", "10", "4"}
    assert equations(ORIGINAL) == {"12+7=19", "19-7=12", "19*2=38"}


def test_a_faithful_rewrite():
    row = audit_row(ORIGINAL, "12 + 7 = 19, 19 * 2 = 38", QUESTION, "38")
    assert row["numbers_kept"] == 1.0  # 12, 7, 19, 2, 38: all kept
    assert row["equations_kept"] == pytest.approx(2 / 3)
    assert row["invented"] == [] and row["answer_derived"] is True


def test_suspect_rewrites_are_named():
    rows = [
        {"uid": "a", "budget": 10, "accepted": True, "answer_preserved": True, "original": ORIGINAL,
         "thinking": "12 + 7 = 19, 19 * 2 = 38", "question": QUESTION, "answer_pred": "38"},
        {"uid": "b", "budget": 10, "accepted": True, "answer_preserved": True, "original": ORIGINAL,
         "thinking": "12 + 9 = 21 so", "question": QUESTION, "answer_pred": "38"},
        {"uid": "c", "budget": 20, "accepted": False, "answer_preserved": False, "original": ORIGINAL,
         "thinking": "no idea", "question": QUESTION, "answer_pred": "5"},
    ]  # fmt: skip
    summary, suspects = audit(rows)
    assert suspects == [{"uid": "b", "budget": 10, "why": "invented numbers 21, 9; the answer never appears in the thinking"}]
    ten, twenty = summary
    assert (ten["compressions"], ten["accepted"], ten["answer_preserved"]) == (2, 2, 1.0)
    assert ten["with_invented_numbers"] == 0.5 and ten["answer_derived"] == 0.5
    assert ten["equations_kept"] == pytest.approx((2 / 3 + 0) / 2)
    assert (twenty["compressions"], twenty["accepted"], twenty["answer_preserved"]) == (1, 0, 0.0)
    assert twenty["numbers_kept"] is None
