"""The report's PNG plots, from `eval_metrics` rows (and `eval_samples` lengths for the error distribution).
One figure per benchmark; one line (or box group) per model. matplotlib's Agg backend: no display needed."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _by_model(metrics: Sequence[dict]) -> dict[str, list[dict]]:
    lines: dict[str, list[dict]] = defaultdict(list)
    for m in metrics:
        label = m["model"] if m["mode"] == "budget" else f"{m['model']} ({m['mode']})"
        lines[label].append(m)
    return {k: sorted(v, key=lambda m: m["budget"]) for k, v in sorted(lines.items())}


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def accuracy_vs_budget(metrics: Sequence[dict], benchmark: str, path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, points in _by_model(metrics).items():
        ax.errorbar([p["budget"] for p in points], [p["pass1_mean"] for p in points],
                    yerr=[p["pass1_std"] for p in points], marker="o", capsize=3, label=label)  # fmt: skip
    ax.set(xscale="log", xlabel="thinking budget (tokens)", ylabel="pass@1 (mean ± std over k)", ylim=(0, 1),
           title=f"{benchmark}: accuracy vs budget")  # fmt: skip
    ax.legend()
    return _save(fig, path)


def length_vs_budget(metrics: Sequence[dict], benchmark: str, path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    budgets = sorted({m["budget"] for m in metrics})
    ax.plot(budgets, budgets, "k--", linewidth=1, label="y = x (the budget)")
    for label, points in _by_model(metrics).items():
        ax.plot([p["budget"] for p in points], [p["thinking_mean"] for p in points], marker="o", label=label)
    ax.set(xscale="log", yscale="log", xlabel="thinking budget (tokens)", ylabel="mean thinking tokens",
           title=f"{benchmark}: thinking length vs budget")  # fmt: skip
    ax.legend()
    return _save(fig, path)


def relative_error_by_budget(samples: Sequence[dict], benchmark: str, path: Path) -> Path:
    """Box plots of |L - B| / B per budget, one group of boxes per model."""
    plt = _pyplot()
    groups: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for s in samples:
        label = s["model"] if s["mode"] == "budget" else f"{s['model']} ({s['mode']})"
        groups[label][s["budget"]].append(abs(s["thinking_tokens"] - s["budget"]) / s["budget"])
    budgets = sorted({s["budget"] for s in samples})
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(budgets) * max(1, len(groups))), 4))
    width = 0.8 / max(1, len(groups))
    for i, (label, per_budget) in enumerate(sorted(groups.items())):
        positions = [b + (i - (len(groups) - 1) / 2) * width for b in range(len(budgets))]
        box = ax.boxplot([per_budget.get(b, [0.0]) for b in budgets], positions=positions, widths=width * 0.9,
                         patch_artist=True, showfliers=False)  # fmt: skip
        for patch in box["boxes"]:
            patch.set_facecolor(f"C{i}")
        ax.plot([], [], color=f"C{i}", linewidth=6, label=label)
    ax.set_xticks(range(len(budgets)), [str(b) for b in budgets])
    ax.set(xlabel="thinking budget (tokens)", ylabel="|L − B| / B", title=f"{benchmark}: relative error per budget")
    ax.legend()
    return _save(fig, path)


def pareto(metrics: Sequence[dict], benchmark: str, path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, points in _by_model(metrics).items():
        ax.plot([p["thinking_mean"] for p in points], [p["pass1_mean"] for p in points], marker="o", label=label)
        for p in points:
            ax.annotate(str(p["budget"]), (p["thinking_mean"], p["pass1_mean"]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")  # fmt: skip
    ax.set(xscale="log", xlabel="mean thinking tokens", ylabel="pass@1", ylim=(0, 1),
           title=f"{benchmark}: accuracy vs thinking spent")  # fmt: skip
    ax.legend()
    return _save(fig, path)
