"""Evaluation metrics against values computed by hand."""

import pytest

from bard_core.metrics import (
    BOOTSTRAP_RESAMPLES,
    bootstrap_mean,
    budget_metrics,
    length_correlation,
    mcnemar_p,
    paired_accuracy,
    spearman,
    wilson,
)


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


def test_wilson_interval_against_published_values():
    # 95% Wilson score intervals (z = 1.95996): the textbook values to four places
    assert wilson(0, 10) == (0.0, pytest.approx(0.2775, abs=1e-4))
    assert wilson(5, 10) == (pytest.approx(0.2366, abs=1e-4), pytest.approx(0.7634, abs=1e-4))
    assert wilson(10, 10) == (pytest.approx(0.7225, abs=1e-4), 1.0)
    # 3/10 at 90% (z = 1.6449, z^2 = 2.7055): centre (0.3 + 0.1353) / 1.2706 = 0.3426,
    # half 1.6449 / 1.2706 * sqrt(0.021 + 0.00676) = 0.2157
    assert wilson(3, 10, confidence=0.90) == (pytest.approx(0.127, abs=1e-3), pytest.approx(0.558, abs=1e-3))


def test_bootstrap_interval_covers_the_mean_and_repeats_with_its_seed():
    groups = [[0.1], [0.5, 0.7], [0.2], [0.9], [0.0, 0.4], [0.3]]
    mean = sum(sum(g) for g in groups) / sum(len(g) for g in groups)
    low, high = bootstrap_mean(groups)
    assert low < mean < high and 0.0 <= low and high <= 0.9
    assert bootstrap_mean(groups) == (low, high)  # the seed is fixed
    assert bootstrap_mean(groups, seed=1) != (low, high)
    assert bootstrap_mean([[0.25], [0.25, 0.25]]) == (0.25, 0.25)  # nothing varies, nothing to be unsure of
    assert BOOTSTRAP_RESAMPLES >= 1000


def test_the_metrics_carry_their_intervals():
    (m,) = budget_metrics(ROWS, tau=0.1)
    assert (m["pass1_lo"], m["pass1_hi"]) == wilson(4, 9)  # 4 of 9 samples right (the unscorable one wrong)
    assert (m["adherence_lo"], m["adherence_hi"]) == wilson(7, 9)
    assert (m["over_budget_lo"], m["over_budget_hi"]) == wilson(3, 9)
    per_problem = [[0.5, 0.0, 0.5], [0.1, 0.2, 0.2], [0.0, 0.1, 0.4]]  # |L - 100| / 100, p1 p2 p3
    assert (m["relerr_lo"], m["relerr_hi"]) == pytest.approx(bootstrap_mean(per_problem))
    assert m["relerr_lo"] <= m["relerr_mean"] <= m["relerr_hi"]


def test_mcnemar_exact_p_by_hand():
    # 1 vs 9 discordant pairs: P(X <= 1) for X ~ Binomial(10, 1/2) is (1 + 10) / 1024; two-sided: twice that
    assert mcnemar_p(1, 9) == pytest.approx(22 / 1024)
    assert mcnemar_p(9, 1) == mcnemar_p(1, 9)
    assert mcnemar_p(2, 8) == pytest.approx(2 * (1 + 10 + 45) / 1024)  # 0.109: not significant at 0.05
    assert mcnemar_p(0, 0) == 1.0 and mcnemar_p(5, 5) == 1.0


def test_paired_accuracy_counts_problems_one_model_got_more_of_right():
    a = [row(f"p{i}", 0, i < 9, "1", 10) for i in range(12)] + [row("only-a", 0, True, "1", 10)]
    b = [row(f"p{i}", 0, i in (0, 9, 10, 11), "1", 10, model="n") for i in range(12)]
    b += [row("p0", 1, True, "1", 10, model="n"), row("p1", 1, True, "1", 10, model="n")]  # k = 2 for p0, p1
    (result,) = paired_accuracy(a, b)
    # p0: 1 vs 2 right (b better); p1: 1 vs 1 (tie); p2..p8: a only; p9..p11: b only; "only-a" unpaired
    assert (result["problems"], result["first_better"], result["second_better"]) == (12, 7, 4)
    assert result["p_value"] == pytest.approx(mcnemar_p(7, 4)) and not result["significant"]
    wide = [row(f"q{i}", 0, True, "1", 10) for i in range(10)]
    (clear,) = paired_accuracy(wide, [dict(r, correct=False) for r in wide])
    assert clear["p_value"] == pytest.approx(2 / 1024) and clear["significant"]
