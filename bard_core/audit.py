"""The compression audit (an open question of the paper: does the compressor keep the reasoning, or
only the answer?). For each accepted compression, against the teacher chain it rewrote:

- numbers kept: the share of the distinct numbers of the original thinking that the rewrite still has;
- equations kept: the share of the original's distinct equations (`a op b = c`, spaces ignored) still there;
- invented numbers: numbers in the rewrite found neither in the original thinking nor in the question;
- answer derived: whether the final answer's number appears in the rewritten thinking at all.

A rewrite is suspect when it invents numbers, or when its thinking never reaches the answer it ends
with (an answer carried over without its derivation). Per budget tier (the tiers `compress_stats` has:
`budget.tier_sql`), so tight budgets can be told apart without one row per distinct budget value.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable

import numpy as np

NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?!\w)")
EQUATION = re.compile(r"-?\d+(?:\.\d+)?\s*[-+*/×x÷]\s*-?\d+(?:\.\d+)?\s*=\s*-?\d+(?:\.\d+)?")


def numbers(text: str) -> set[str]:
    return set(NUMBER.findall(text or ""))


def equations(text: str) -> set[str]:
    return {re.sub(r"\s+", "", e) for e in EQUATION.findall(text or "")}


def audit_row(original: str, rewrite: str, question: str, answer: str | None) -> dict:
    kept_from = numbers(original)
    found = numbers(rewrite)
    eq_from = equations(original)
    invented = sorted(found - kept_from - numbers(question))
    answer_numbers = numbers(answer or "")
    return {
        "numbers_kept": len(kept_from & found) / len(kept_from) if kept_from else None,
        "equations_kept": len(eq_from & equations(rewrite)) / len(eq_from) if eq_from else None,
        "invented": invented,
        "answer_derived": bool(answer_numbers & found) if answer_numbers else None,
    }


def audit(rows: Iterable[dict]) -> tuple[list[dict], list[dict]]:
    """rows: compressions with `uid`, `budget`, `tier` (its budget tier's name), `accepted`, `reject_reason`,
    `answer_preserved`, `original` (the teacher's thinking), `thinking` (the rewrite), `question`, `answer_pred`.
    Returns (per-tier summary, tightest tier first; suspect accepted rewrites). Retention is measured on accepted
    rewrites, answer preservation on all those sent; `too_long` rows (never sent) are only counted."""
    per_tier: dict[str, list[dict]] = defaultdict(list)
    preserved: dict[str, list[bool]] = defaultdict(list)
    too_long: dict[str, int] = defaultdict(int)
    lowest: dict[str, int] = {}  # the tier's smallest budget, to order the tiers
    suspects = []
    for r in rows:
        tier = r["tier"]
        lowest[tier] = min(lowest.get(tier, r["budget"]), r["budget"])
        if r["reject_reason"] == "too_long":
            too_long[tier] += 1
            continue
        preserved[tier].append(bool(r["answer_preserved"]))
        if not r["accepted"]:
            continue
        result = audit_row(r["original"], r["thinking"], r["question"], r["answer_pred"])
        per_tier[tier].append(result)
        reasons = []
        if result["invented"]:
            reasons.append("invented numbers " + ", ".join(result["invented"][:5]))
        if result["answer_derived"] is False:
            reasons.append("the answer never appears in the thinking")
        if reasons:
            suspects.append({"uid": r["uid"], "budget": r["budget"], "why": "; ".join(reasons)})
    summary = []
    for tier in sorted(lowest, key=lowest.get):
        results = per_tier[tier]

        def mean(key: str) -> float | None:
            values = [float(x[key]) for x in results if x[key] is not None]
            return float(np.mean(values)) if values else None

        summary.append({
            "tier": tier, "compressions": len(preserved[tier]), "too_long": too_long[tier], "accepted": len(results),
            "answer_preserved": float(np.mean(preserved[tier])) if preserved[tier] else None,
            "numbers_kept": mean("numbers_kept"),
            "equations_kept": mean("equations_kept"), "answer_derived": mean("answer_derived"),
            "with_invented_numbers": float(np.mean([bool(x["invented"]) for x in results])) if results else None,
        })  # fmt: skip
    return summary, suspects
