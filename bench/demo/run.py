"""`make demo`'s pipeline timed stage by stage on this machine, and its headline results.

    .venv/bin/python bench/demo/run.py [--home DIR] [-- extra bard run options, e.g. --set ...]

Runs `bard run` (the demo profile; `-- --config configs/demo-ablations.yaml` for the ablations) into a fresh
home (or DIR, reusing what it holds), then prints the wall time of each artifact made (the time between
consecutive manifests, the first counted from the start; cached stages are not listed), the total, and from the
evaluation: Spearman's rho of length with budget, and accuracy / over-budget rate / relative error per budget.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BARD = str(Path(sys.executable).with_name("bard"))


def query(home: Path, sql: str) -> list[dict]:
    out = subprocess.run([BARD, "query", sql, "-f", "json", "--home", str(home)], capture_output=True, text=True, check=True)
    return [json.loads(line) for line in out.stdout.splitlines()]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--home", type=Path, default=None)
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
    previous = start
    for created, stage, key in sorted(made):
        print(f"{stage:>9} {key[:8]}: {created - previous:6.1f} s")
        previous = created
    print(f"    total: {total:6.1f} s (bard run, Prefect and Ray start-up included)")
    for row in query(home, "select model, spearman from eval_correlation order by model"):
        print(f"Spearman(length, budget) {row['model']}: {row['spearman']:.3f}")
    rows = query(home, "select model, budget, round(pass1_mean, 3) as acc, round(over_budget, 3) as over, "
                       "round(relerr_mean, 3) as relerr from eval_metrics order by model, budget")  # fmt: skip
    for row in rows:
        print(f"{row['model']:>5} budget {row['budget']:>4}: accuracy {row['acc']:.3f}  over budget {row['over']:.3f}  "
              f"relative error {row['relerr']:.3f}")


if __name__ == "__main__":
    main()
