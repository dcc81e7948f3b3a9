"""What the evaluation measures, from `eval_samples` rows: accuracy and budget adherence per budget.

Per (model, benchmark, budget), over the problems and their k samples:
- pass@1 mean ± std: the accuracy of sample index j over all problems, then mean and std over j = 0..k-1
  (std with ddof=1; 0 when k = 1). Unscorable samples (`correct` null) count as wrong and are counted.
- maj@k: the answer given most often among a problem's k samples (ties: the one reached first) is right.
- thinking length L: mean, p50, p90; relative error |L - B| / B: mean, p50, p90;
  adherence: share with L <= B (1 + tau); over budget: share with L > B.
Per (model, benchmark): Spearman's correlation of L with B over all samples (ties get average ranks).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

import numpy as np

from bard_core.scoring import within

GROUP = ("model", "mode", "benchmark")


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
    return {
        **row,
        "relerr_mean": float(relative.mean()), "relerr_p50": float(np.percentile(relative, 50)),
        "relerr_p90": float(np.percentile(relative, 90)),
        "adherence": float(np.mean([within(n, budget, tau) for n in lengths])), "over_budget": float(np.mean(lengths > budget)),
    }  # fmt: skip


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
