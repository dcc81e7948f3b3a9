"""What the evaluation measures, from `eval_samples` rows: accuracy and budget adherence per budget.

Per (model, benchmark, budget), over the problems and their k samples:
- pass@1 mean ± std: the accuracy of sample index j over all problems, then mean and std over j = 0..k-1
  (std with ddof=1; 0 when k = 1). Unscorable samples (`correct` null) count as wrong and are counted.
- maj@k: the answer given most often among a problem's k samples (ties: the one reached first) is right.
- thinking length L: mean, p50, p90; relative error |L - B| / B: mean, p50, p90;
  adherence: share with L <= B (1 + tau); over budget: share with L > B.
Per (model, benchmark): Spearman's correlation of L with B over all samples (ties get average ranks).

Each rate comes with its `CONFIDENCE` interval: Wilson's score interval for accuracy (`pass1_lo`/`pass1_hi`, over
all samples), adherence and the over-budget rate; for the mean relative error (`relerr_lo`/`relerr_hi`) a
percentile bootstrap that resamples problems (a problem's k samples go together: they are not independent).
Wilson's interval counts a problem's k samples as independent trials: with k > 1 it is narrower than the truth.
`paired_accuracy` compares two models on the same problems (McNemar's exact test).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from statistics import NormalDist

import numpy as np

from bard_core.scoring import within

GROUP = ("model", "mode", "benchmark")
CONFIDENCE = 0.95  # the level of every interval in eval_metrics
BOOTSTRAP_RESAMPLES = 1000  # resamples of the relative error's interval: its ends move by ~0.002 between seeds
BOOTSTRAP_SEED = 0  # the same intervals on every run of the same samples
SIGNIFICANCE = 0.05  # a paired difference with p below this is reported as significant


def budget_metrics(rows: Iterable[dict], tau: float) -> list[dict]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[tuple(r[g] for g in GROUP) + (r["budget"],)].append(r)
    return [_one_budget(key, groups[key], tau) for key in sorted(groups)]


def _one_budget(key: tuple, samples: list[dict], tau: float) -> dict:
    model, mode, benchmark, budget = key
    by_problem: dict[str, list[dict]] = defaultdict(list)
    for r in samples:
        by_problem[r["problem_uid"]].append(r)
    k = max(len(v) for v in by_problem.values())
    per_index = []
    for j in range(k):
        hits = [bool(r["correct"]) for v in by_problem.values() for r in v if r["sample_idx"] == j]
        if hits:
            per_index.append(float(np.mean(hits)))
    majority = [_majority_correct(v) for v in by_problem.values()]
    lengths = np.array([r["thinking_tokens"] for r in samples], dtype=float)
    row = {
        "model": model, "mode": mode, "benchmark": benchmark, "budget": budget,
        "problems": len(by_problem), "samples": len(samples),
        "unscorable": sum(1 for r in samples if r["correct"] is None),
        "pass1_mean": float(np.mean(per_index)), "pass1_std": float(np.std(per_index, ddof=1)) if len(per_index) > 1 else 0.0,
        "maj_at_k": float(np.mean(majority)), "k": k,
        "thinking_mean": float(lengths.mean()), "thinking_p50": float(np.percentile(lengths, 50)),
        "thinking_p90": float(np.percentile(lengths, 90)),
    }  # fmt: skip
    relative = np.abs(lengths - budget) / budget
    right = sum(1 for r in samples if r["correct"])
    adherent = sum(1 for n in lengths if within(n, budget, tau))
    over = int(np.sum(lengths > budget))
    per_problem = [[abs(r["thinking_tokens"] - budget) / budget for r in v] for v in by_problem.values()]
    n = len(samples)
    return {
        **row,
        "relerr_mean": float(relative.mean()), "relerr_p50": float(np.percentile(relative, 50)),
        "relerr_p90": float(np.percentile(relative, 90)),
        "adherence": adherent / n, "over_budget": over / n,
        **_ends("pass1", wilson(right, n)), **_ends("adherence", wilson(adherent, n)),
        **_ends("over_budget", wilson(over, n)), **_ends("relerr", bootstrap_mean(per_problem)),
    }  # fmt: skip


def _ends(name: str, interval: tuple[float, float]) -> dict:
    return {f"{name}_lo": interval[0], f"{name}_hi": interval[1]}


def wilson(successes: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson's score interval for a proportion: unlike p ± z·se it stays inside [0, 1] and is not empty at
    0/n or n/n."""
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # at 0/n and n/n an end is exactly 0 or 1 (the formula gives it up to rounding)
    return (0.0 if successes == 0 else centre - half), (1.0 if successes == n else centre + half)


def bootstrap_mean(groups: Sequence[Sequence[float]], confidence: float = CONFIDENCE,
                   resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of all values, resampling whole groups (a problem's samples)."""
    sums = np.array([sum(g) for g in groups], dtype=float)
    counts = np.array([len(g) for g in groups], dtype=float)
    picks = np.random.default_rng(seed).integers(0, len(groups), size=(resamples, len(groups)))
    means = sums[picks].sum(axis=1) / counts[picks].sum(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def _majority_correct(samples: list[dict]) -> bool:
    ordered = sorted(samples, key=lambda r: r["sample_idx"])
    votes = Counter(r["answer_pred"] for r in ordered if r["answer_pred"] is not None)
    if not votes:
        return False
    top = max(votes.values())
    winner = next(r for r in ordered if r["answer_pred"] is not None and votes[r["answer_pred"]] == top)
    return bool(winner["correct"])


def length_correlation(rows: Iterable[dict]) -> list[dict]:
    """Spearman's rho of thinking length with budget, per (model, mode, benchmark)."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[tuple(r[g] for g in GROUP)].append(r)
    out = []
    for key in sorted(groups):
        samples = groups[key]
        rho = spearman([r["budget"] for r in samples], [r["thinking_tokens"] for r in samples])
        out.append({**dict(zip(GROUP, key)), "samples": len(samples), "spearman": rho})
    return out


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rank correlation (Pearson's on average ranks); None when either side is constant."""
    rx, ry = _ranks(np.asarray(x, dtype=float)), _ranks(np.asarray(y, dtype=float))
    if rx.std() == 0 or ry.std() == 0:
        return None
    return float(np.corrcoef(rx, ry)[0, 1])


def _ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties given the average of the ranks they span."""
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values))
    sorted_values = values[order]
    start = 0
    for end in range(1, len(values) + 1):
        if end == len(values) or sorted_values[end] != sorted_values[start]:
            ranks[order[start:end]] = (start + end + 1) / 2  # mean of ranks start+1 .. end
            start = end
    return ranks


def mcnemar_p(first_only: int, second_only: int) -> float:
    """McNemar's exact test, two-sided: under no difference each discordant pair is equally likely to go either
    way, so the smaller count is binomial(first_only + second_only, 1/2); p = twice its tail, at most 1."""
    n = first_only + second_only
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(first_only, second_only) + 1))
    return min(1.0, 2 * tail / 2**n)


def paired_accuracy(first: Iterable[dict], second: Iterable[dict], alpha: float = SIGNIFICANCE) -> list[dict]:
    """Per (benchmark, budget), two models' `eval_samples` rows on the problems both answered: a problem is a
    discordant pair when one model got more of its k samples right than the other (with k = 1 that is McNemar's
    test exactly; problems, not samples, are the independent units). Problems only one side has are left out."""
    hits: list[dict[tuple, dict[str, int]]] = []
    for rows in (first, second):
        found: dict[tuple, dict[str, int]] = defaultdict(dict)
        for r in rows:
            cell = found[(r["benchmark"], r["budget"])]
            cell[r["problem_uid"]] = cell.get(r["problem_uid"], 0) + bool(r["correct"])
        hits.append(found)
    a, b = hits
    out = []
    for key in sorted(set(a) & set(b)):
        both = set(a[key]) & set(b[key])
        first_only = sum(1 for uid in both if a[key][uid] > b[key][uid])
        second_only = sum(1 for uid in both if b[key][uid] > a[key][uid])
        p = mcnemar_p(first_only, second_only)
        out.append({"benchmark": key[0], "budget": key[1], "problems": len(both), "first_better": first_only,
                    "second_better": second_only, "p_value": p, "significant": p < alpha})  # fmt: skip
    return out
