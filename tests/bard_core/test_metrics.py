"""Evaluation metrics against values computed by hand."""

import pytest

from bard_core.metrics import budget_metrics, length_correlation, spearman


def row(problem, idx, correct, pred, length, budget=100, model="m", mode="budget", benchmark="b"):
    return {"model": model, "mode": mode, "benchmark": benchmark, "problem_uid": problem, "sample_idx": idx,
            "correct": correct, "answer_pred": pred, "thinking_tokens": length, "budget": budget}  # fmt: skip


# Three problems, k = 3, budget 100.
ROWS = [
    row("p1", 0, True, "4", 50), row("p1", 1, False, "5", 100), row("p1", 2, True, "4", 150),
    row("p2", 0, False, "7", 90), row("p2", 1, False, "7", 120), row("p2", 2, True, "8", 80),
    row("p3", 0, None, None, 100), row("p3", 1, True, "1", 110), row("p3", 2, False, "2", 60),
]  # fmt: skip


def test_budget_metrics_by_hand():
    (m,) = budget_metrics(ROWS, tau=0.1)
    # sample index 0: p1 right, p2 wrong, p3 unscorable (wrong) -> 1/3; index 1: p3 -> 1/3; index 2: p1, p2 -> 2/3
    assert m["pass1_mean"] == pytest.approx(4 / 9)
    # deviations -1/9, -1/9, 2/9: sum of squares 6/81, over k - 1 = 2 -> variance 1/27
    assert m["pass1_std"] == pytest.approx((1 / 27) ** 0.5)
    # majority: p1 "4" (2 votes, right); p2 "7" (2 votes, wrong); p3 tie "1"/"2": the first reached, "1", right
    assert m["maj_at_k"] == pytest.approx(2 / 3)
    assert (m["problems"], m["samples"], m["k"], m["unscorable"]) == (3, 9, 3, 1)
    lengths = [50, 100, 150, 90, 120, 80, 100, 110, 60]
    assert m["thinking_mean"] == pytest.approx(sum(lengths) / 9)
    assert m["thinking_p50"] == 100
    assert m["relerr_mean"] == pytest.approx(sum(abs(x - 100) / 100 for x in lengths) / 9)
    assert m["adherence"] == pytest.approx(7 / 9)  # 150 and 120 exceed 110
    assert m["over_budget"] == pytest.approx(3 / 9)  # 150, 120, 110


def test_metrics_are_split_by_model_mode_benchmark_and_budget():
    rows = ROWS + [dict(r, budget=200) for r in ROWS] + [dict(r, model="n") for r in ROWS]
    keys = [(m["model"], m["budget"]) for m in budget_metrics(rows, tau=0.0)]
    assert keys == [("m", 100), ("m", 200), ("n", 100)]


def test_spearman_by_hand():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [40, 30, 20, 10]) == pytest.approx(-1.0)
    # ties take average ranks: x ranks 1.5, 1.5, 3; y ranks 1, 2, 3 -> Pearson of those
    assert spearman([5, 5, 9], [1, 2, 3]) == pytest.approx(0.8660254, abs=1e-6)
    assert spearman([1, 1, 1], [1, 2, 3]) is None


def test_length_correlation_per_model():
    rows = [row(f"p{i}", 0, True, "1", b + i % 3, budget=b) for i, b in enumerate([10, 20, 40, 80, 160, 320])]
    rows += [row(f"p{i}", 0, True, "1", 100 - b // 10, budget=b, model="flat") for i, b in enumerate([10, 20, 40, 80])]
    result = {r["model"]: r for r in length_correlation(rows)}
    assert result["m"]["spearman"] == pytest.approx(1.0) and result["m"]["samples"] == 6
    assert result["flat"]["spearman"] == pytest.approx(-1.0)
