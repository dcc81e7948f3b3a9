"""The evaluation report: Markdown with the metrics tables and the plots, written beside its PNGs.

    report.md
    plots/<benchmark>-accuracy.png | -length.png | -relative-error.png | -pareto.png
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from bard_core import plots
from bard_core.metrics import CONFIDENCE, SIGNIFICANCE, paired_accuracy


def interval(key: str, ends: str, fmt: str) -> Callable[[dict], str]:
    """A metric with its interval, `97.0% [94.1%, 98.6%]`; the metric alone for rows written before intervals."""

    def cell(r: dict) -> str:
        if r.get(f"{ends}_lo") is None:
            return fmt.format(r[key])
        return f"{fmt.format(r[key])} [{fmt.format(r[f'{ends}_lo'])}, {fmt.format(r[f'{ends}_hi'])}]"

    return cell


CI = f"[{CONFIDENCE:.0%} CI]"
COLUMNS = [  # (metric key, header, format: a format string or a function of the row)
    ("budget", "budget", "{}"), ("pass1_mean", f"pass@1 {CI}", interval("pass1_mean", "pass1", "{:.3f}")),
    ("pass1_std", "± std", "{:.3f}"), ("maj_at_k", "maj@k", "{:.3f}"), ("thinking_mean", "L mean", "{:.1f}"),
    ("thinking_p50", "L p50", "{:.0f}"), ("thinking_p90", "L p90", "{:.0f}"),
    ("relerr_mean", f"rel. error mean {CI}", interval("relerr_mean", "relerr", "{:.3f}")), ("relerr_p90", "rel. error p90", "{:.3f}"),
    ("adherence", f"L ≤ B(1+τ) {CI}", interval("adherence", "adherence", "{:.1%}")),
    ("over_budget", f"L > B {CI}", interval("over_budget", "over_budget", "{:.1%}")),
]  # fmt: skip


def markdown_table(rows: Sequence[dict], columns: Sequence[tuple[str, str, str | Callable[[dict], str]]]) -> str:
    lines = ["| " + " | ".join(h for _, h, _ in columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        cells = ["—" if r.get(k) is None else fmt(r) if callable(fmt) else fmt.format(r[k]) for k, _, fmt in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def side_by_side(rows: Sequence[dict], samples: Sequence[dict]) -> str:
    """One line per budget, each model's accuracy, over-budget rate and relative error across (models in
    name order), then which pairs of models differ in accuracy beyond noise (`samples`: their eval_samples rows)."""
    models = sorted({m["model"] for m in rows})
    cells = {(m["model"], m["budget"]): m for m in rows}
    differ = significant_pairs(models, samples)
    lines = [f"pass@1 differences: McNemar's exact test on the problems both models answered; a pair not listed "
             f"differs within noise (p ≥ {SIGNIFICANCE}).", "",
             "| budget | " + " | ".join(f"{name}: pass@1 | L > B | rel. error" for name in models) + " | pass@1 differences |",
             "|---|" + "---|---|---|" * len(models) + "---|"]  # fmt: skip
    for budget in sorted({m["budget"] for m in rows}):
        line = [str(budget)]
        for name in models:
            m = cells.get((name, budget))
            for k, fmt in (("pass1_mean", "{:.3f}"), ("over_budget", "{:.1%}"), ("relerr_mean", "{:.3f}")):
                line.append("—" if m is None or m.get(k) is None else fmt.format(m[k]))
        line.append("; ".join(differ.get(budget, [])) or "within noise")
        lines.append("| " + " | ".join(line) + " |")
    return "\n".join(lines)


def significant_pairs(models: Sequence[str], samples: Sequence[dict]) -> dict[int, list[str]]:
    """budget -> the pairs of models whose accuracy differs significantly there, `a > b (p = 0.003)`."""
    found: dict[int, list[str]] = {}
    for i, a in enumerate(models):
        for b in models[i + 1 :]:
            tests = paired_accuracy([s for s in samples if s["model"] == a], [s for s in samples if s["model"] == b])
            for t in (t for t in tests if t["significant"]):
                better, worse = (a, b) if t["first_better"] > t["second_better"] else (b, a)
                found.setdefault(t["budget"], []).append(f"{better} > {worse} (p = {t['p_value']:.2g})")
    return found


AUDIT_COLUMNS = [
    ("tier", "budget", "{}"), ("compressions", "rewrites", "{}"), ("accepted", "accepted", "{}"),
    ("too_long", "too long (not sent)", "{}"), ("answer_preserved", "answer preserved", "{:.1%}"), ("numbers_kept", "numbers kept", "{:.1%}"),
    ("equations_kept", "equations kept", "{:.1%}"), ("answer_derived", "answer in thinking", "{:.1%}"),
    ("with_invented_numbers", "invented numbers", "{:.1%}"),
]  # fmt: skip
SUSPECTS_SHOWN = 20


def write_report(
    out: Path, metrics: list[dict], correlation: list[dict], lengths: list[dict], header: dict,
    audit: tuple[list[dict], list[dict]] | None = None,
) -> Path:  # fmt: skip
    """`lengths`: eval samples without their text (model, mode, benchmark, budget, thinking_tokens, problem_uid,
    correct).
    `header`: what the report is of (artifact key, models, when), shown as a list. `audit`: the
    compression audit (`bard_core.audit.audit`), when there were compressions."""
    parts = ["# BARD evaluation report", ""]
    parts += [f"- **{k}**: {v}" for k, v in header.items()]
    parts += ["", "L: thinking tokens; B: the budget; rel. error: \\|L − B\\| / B; τ: `reward.tau`.", ""]
    parts += ["## Budget adherence (Spearman's ρ of thinking length with budget)", ""]
    parts.append(markdown_table(correlation, [("benchmark", "benchmark", "{}"), ("model", "model", "{}"), ("mode", "mode", "{}"),
                                              ("samples", "samples", "{}"), ("spearman", "ρ", "{:.3f}")]))  # fmt: skip
    for benchmark in sorted({m["benchmark"] for m in metrics}):
        rows = [m for m in metrics if m["benchmark"] == benchmark]
        parts += ["", f"## {benchmark}", ""]
        if len({m["model"] for m in rows}) > 1:
            parts += [side_by_side(rows, [s for s in lengths if s["benchmark"] == benchmark]), ""]
        for model in sorted({(m["model"], m["mode"]) for m in rows}):
            name = model[0] if model[1] == "budget" else f"{model[0]} ({model[1]})"
            first = next(m for m in rows if (m["model"], m["mode"]) == model)
            parts += [f"### {name}: {first['problems']} problems × k = {first['k']}", ""]
            parts += [markdown_table([m for m in rows if (m["model"], m["mode"]) == model], COLUMNS), ""]
        slug = "".join(c if c.isalnum() or c in "-_" else "-" for c in benchmark)
        samples = [s for s in lengths if s["benchmark"] == benchmark]
        figures = [
            plots.accuracy_vs_budget(rows, benchmark, out / "plots" / f"{slug}-accuracy.png"),
            plots.length_vs_budget(rows, benchmark, out / "plots" / f"{slug}-length.png"),
            plots.relative_error_by_budget(samples, benchmark, out / "plots" / f"{slug}-relative-error.png"),
            plots.pareto(rows, benchmark, out / "plots" / f"{slug}-pareto.png"),
        ]
        parts += [f"![{f.stem}](plots/{f.name})" for f in figures]
    if audit is not None:
        summary, suspects = audit
        parts += ["", "## Compression audit", "", "Retention is measured on accepted rewrites (see `bard_core/audit.py`).", ""]
        parts += [markdown_table(summary, AUDIT_COLUMNS), ""]
        parts += [f"{len(suspects)} suspect accepted rewrite(s)" + (f"; the first {SUSPECTS_SHOWN}:" if len(suspects) > SUSPECTS_SHOWN else ":" if suspects else "."), ""]
        parts += [f"- `{s['uid']}` (budget {s['budget']}): {s['why']}" for s in suspects[:SUSPECTS_SHOWN]]
    report = out / "report.md"
    report.write_text("\n".join(parts) + "\n")
    return report
