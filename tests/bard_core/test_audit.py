"""The compression audit, by hand."""

import pytest

from bard_core.audit import audit, audit_row, equations, numbers
from bard_core.budget import tier_sql
from bard_core.config import BudgetSamplingConfig

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
        {"uid": "a", "budget": 10, "tier": "10", "accepted": True, "reject_reason": None, "answer_preserved": True,
         "original": ORIGINAL, "thinking": "12 + 7 = 19, 19 * 2 = 38", "question": QUESTION, "answer_pred": "38"},
        {"uid": "b", "budget": 10, "tier": "10", "accepted": True, "reject_reason": None, "answer_preserved": True,
         "original": ORIGINAL, "thinking": "12 + 9 = 21 so", "question": QUESTION, "answer_pred": "38"},
        {"uid": "c", "budget": 20, "tier": "20", "accepted": False, "reject_reason": "answer_changed",
         "answer_preserved": False, "original": ORIGINAL, "thinking": "no idea", "question": QUESTION, "answer_pred": "5"},
    ]  # fmt: skip
    summary, suspects = audit(rows)
    assert suspects == [{"uid": "b", "budget": 10, "why": "invented numbers 21, 9; the answer never appears in the thinking"}]
    ten, twenty = summary
    assert (ten["compressions"], ten["accepted"], ten["answer_preserved"]) == (2, 2, 1.0)
    assert ten["with_invented_numbers"] == 0.5 and ten["answer_derived"] == 0.5
    assert ten["equations_kept"] == pytest.approx((2 / 3 + 0) / 2)
    assert (twenty["compressions"], twenty["accepted"], twenty["answer_preserved"]) == (1, 0, 0.0)
    assert twenty["numbers_kept"] is None


def test_continuous_budgets_are_audited_per_tier_as_compress_stats_bins_them():
    """Budgets drawn from a continuous range (modes uniform and flat) are one audit row per log-spaced tier, the
    tiers `compress_stats` has (`tier_sql`), tightest first; `too_long` rows (never sent) are counted apart."""
    import duckdb

    sampling = BudgetSamplingConfig(mode="uniform", min_budget=10, max_budget=1000, flat_bins=2)  # tiers 10-100, >= 100
    budgets = [11, 97, 230, 14, 640, 52]
    labelled = duckdb.sql(f"select budget, {tier_sql(sampling)} as tier from (select unnest({budgets}) as budget)").fetchall()
    rewrite = {"accepted": True, "reject_reason": None, "answer_preserved": True, "original": ORIGINAL,
               "thinking": "12 + 7 = 19, 19 * 2 = 38", "question": QUESTION, "answer_pred": "38"}  # fmt: skip
    rows = [{**rewrite, "uid": f"u{b}", "budget": b, "tier": tier} for b, tier in labelled]
    rows.append({**rewrite, "uid": "long", "budget": 300, "tier": "100-1000", "accepted": False,
                 "reject_reason": "too_long", "answer_preserved": None, "thinking": None, "answer_pred": None})  # fmt: skip
    summary, _ = audit(rows)
    assert [(s["tier"], s["compressions"], s["too_long"], s["accepted"]) for s in summary] == [
        ("10-100", 4, 0, 4), ("100-1000", 2, 1, 2)]
    assert summary[1]["answer_preserved"] == 1.0, "a prompt never sent is not an answer lost"
