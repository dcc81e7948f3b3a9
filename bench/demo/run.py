"""`make demo`'s pipeline timed stage by stage on this machine, and its headline results.

    .venv/bin/python bench/demo/run.py [--home DIR] [--table FILE] [-- extra bard run options, e.g. --set ...]

Runs `bard run` (the demo profile; `-- --config configs/demo-ablations.yaml` for the ablations) into a fresh
home (or DIR, reusing what it holds), then prints the wall time of each artifact made (the time between
consecutive manifests, the first counted from the start; cached stages are not listed), the total, and from the
evaluation: Spearman's rho of length with budget, and accuracy / over-budget rate / relative error per budget.
--table FILE writes the same as markdown, with 95% intervals and the machine (README shows it).
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tables import machine, markdown  # bench/demo/tables.py, beside this script

ROOT = Path(__file__).resolve().parents[2]
BARD = str(Path(sys.executable).with_name("bard"))


def query(home: Path, sql: str) -> list[dict]:
    out = subprocess.run([BARD, "query", sql, "-f", "json", "--home", str(home)], capture_output=True, text=True, check=True)
    return [json.loads(line) for line in out.stdout.splitlines()]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--home", type=Path, default=None)
    parser.add_argument("--table", type=Path, help="also write the figures as markdown (for README) to this file")
    parser.add_argument("extra", nargs="*", help="more `bard run` options")
    opts = parser.parse_args()
    home = opts.home or Path(tempfile.mkdtemp(prefix="bard-bench-demo-"))
    start = time.time()
    subprocess.run([BARD, "run", "--home", str(home), *opts.extra], cwd=ROOT, check=True)
    total = time.time() - start
    made = []  # (created_at, stage, key) of every artifact this run made, variants' included
    for manifest in home.glob("artifacts/*/*/manifest.json"):
        m = json.loads(manifest.read_text())
        if m["created_at"] >= start:
            made.append((m["created_at"], m["stage"], m["key"]))
    previous, times = start, []
    for created, stage, key in sorted(made):
        print(f"{stage:>9} {key[:8]}: {created - previous:6.1f} s")
        times.append((stage, created - previous))
        previous = created
    print(f"    total: {total:6.1f} s (bard run, Prefect and Ray start-up included)")
    rho = {r["model"]: r["spearman"] for r in query(home, "select model, spearman from eval_correlation order by model")}
    for model, value in rho.items():
        print(f"Spearman(length, budget) {model}: {value:.3f}")
    rows = query(home, "select * from eval_metrics order by model, budget")
    for row in rows:
        print(f"{row['model']:>5} budget {row['budget']:>4}: accuracy {row['pass1_mean']:.3f}  "
              f"over budget {row['over_budget']:.3f}  relative error {row['relerr_mean']:.3f}")  # fmt: skip
    if opts.table:
        write_table(opts.table, opts.extra, total, times, rows, rho, home, threads(home, made))


def threads(home: Path, made: list) -> str:
    """The torch threads each training and evaluation stage of this run had, from the configs beside its artifacts."""
    found = {}
    for _, stage, key in made:
        config = json.loads((home / "artifacts" / stage / key / "config.json").read_text())["config"]
        if stage in ("sft", "grpo"):
            found.setdefault(stage, set()).add(config[stage]["num_threads"])
        elif stage == "eval":
            found.setdefault(stage, set()).add(config["eval"]["generation"]["num_threads"])
    if not found:  # nothing trained or evaluated in this run: every such stage was cached
        return "torch threads: no stage trained or evaluated in this run"
    return "torch threads: " + ", ".join(f"{stage} {'/'.join(map(str, sorted(n)))}" for stage, n in found.items())


def interval(row: dict, value: str, name: str, percent: bool) -> str:
    """The `value` column with its interval, the columns `name`_lo and `name`_hi."""
    value, lo, hi = row[value], row[f"{name}_lo"], row[f"{name}_hi"]
    if percent:
        return f"{100 * value:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]"
    return f"{value:.3f} [{lo:.3f}, {hi:.3f}]"


def write_table(path: Path, extra: list[str], total: float, times: list, rows: list[dict], rho: dict, home: Path,
                threads: str) -> None:  # fmt: skip
    """Time per stage, then per model and budget accuracy, over-budget rate and relative error with their 95%
    intervals (Wilson; bootstrap for the relative error), and Spearman's rho: markdown for README."""
    budgets = sorted({r["budget"] for r in rows})
    # budgets SFT never saw: named by the assembled data's config, when every assembly in the home agrees
    holdouts = {tuple(json.loads(f.read_text())["config"]["budget_sampling"]["holdout"])
                for f in home.glob("artifacts/assemble/*/config.json")}  # fmt: skip
    holdout = set(holdouts.pop()) if len(holdouts) == 1 else set()
    cell = {(r["model"], r["budget"]): r for r in rows}
    figures = []
    for model in sorted({r["model"] for r in rows}, key=lambda m: (m == "reference", m != "sft", m)):
        if model != "reference":  # the scripted reference is right and within budget by construction
            figures.append([f"{model} accuracy", *(interval(cell[model, b], "pass1_mean", "pass1", True) for b in budgets)])
            figures.append([f"{model} over budget", *(interval(cell[model, b], "over_budget", "over_budget", True) for b in budgets)])
        figures.append([f"{model} relative error", *(interval(cell[model, b], "relerr_mean", "relerr", False) for b in budgets)])
    stages = ", ".join(f"{stage} {seconds:.1f} s" for stage, seconds in times)
    text = "\n".join([
        f"`{' '.join(['bench/demo/run.py', *extra])}`: {total:.0f} s end to end ({stages}).",
        f"Machine: {machine(threads)}.", "",
        markdown(["budget", *(f"{b} (unseen)" if b in holdout else str(b) for b in budgets)], figures),
        "Spearman's ρ of thinking length with budget: " + ", ".join(f"{m} {v:.3f}" for m, v in sorted(rho.items()) if v is not None) + ".",
        "Brackets: 95% intervals (Wilson's for rates, a bootstrap over problems for the relative error).", "",
    ])  # fmt: skip
    path.write_text(text)
    print(f"table written to {path}")


if __name__ == "__main__":
    main()
