"""The demo's SFT on several seeds: does one setting meet the demo's criteria on every seed, and in how long?

    .venv/bin/python bench/demo/seeds.py --home H [--seeds 0,1,2,3,4] [--parallel 2] [--keep-going] [--table FILE] \
        [-- --set sft.group_by_length=true --set sft.epochs=1.5 ...]

H must hold the demo's upstream artifacts (`bard run --home H --stages problems,teacher,compress,assemble`).
Per seed S it runs `bard run --stages sft,eval` with sft.seed=S and student.seed=S (the data order and the
initial weights both vary), one torch thread for training and for generation, and the evaluation limited to the
scripted reference and the SFT model; the extra options go to every run. Runs go one after the other, or two
at a time with --parallel 2; a seed that fails a criterion stops the setting unless --keep-going. Finished
artifacts are reused, so rerunning the command only prints the table. It prints one row per seed: SFT seconds
(the trainer's own runtime), Spearman(length, budget), accuracy at the smallest and the best budget, the largest
over-budget rate at the trained budgets, the largest relative-error gap to the reference, and pass (P) or fail
(F) per criterion, in that order. --table FILE writes the same as markdown, with each budget's accuracy,
over-budget rate and relative-error gap as mean (min to max) over the seeds, and the machine (README shows it).
"""

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # the project's packages, to compute the keys the runs write

from bard_core.config import load_config  # noqa: E402
from tables import machine, markdown, spread  # noqa: E402  (bench/demo/tables.py, beside this script)
from tasks.graph import key  # noqa: E402

BARD = str(Path(sys.executable).with_name("bard"))
EVAL_MODELS = ("eval.models=[{name: reference, generation: {backend: scripted, role: reference, "
               "tokenizer: configs/demo-tokenizer.json}}, {name: sft, model: sft}]")  # fmt: skip
# The demo's criteria (issue 21), on held-out problems, greedy
MIN_SPEARMAN = 0.9
MIN_ACCURACY_GAIN = 0.40  # best budget's accuracy over the smallest budget's
MAX_OVER_BUDGET = 0.10  # at the budgets SFT trained on
MAX_RELERR_GAP = 0.05  # mean relative error above the scripted reference's, at every budget
CRITERIA = ("rho", "accuracy gain", "over budget", "relative error")


def overrides(seed: int, extra: list[str]) -> list[str]:
    return [f"sft.seed={seed}", f"student.seed={seed}", "sft.num_threads=1", "eval.generation.num_threads=1",
            EVAL_MODELS, *extra]  # fmt: skip


def run_seed(home: Path, config: str, seed: int, extra: list[str]) -> None:
    sets = [arg for item in overrides(seed, extra) for arg in ("--set", item)]
    log = home / f"seeds-{seed}-{int(time.time())}.log"
    with log.open("w") as out:
        done = subprocess.run([BARD, "run", "--home", str(home), "--config", config, "--stages", "sft,eval", *sets],
                              cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"seed {seed}: bard run failed ({done.returncode}); see {log}")


def measure(home: Path, config: str, seed: int, extra: list[str]) -> dict:
    cfg = load_config(ROOT / config, overrides(seed, extra), str(home))
    sft = json.loads((home / "artifacts" / "sft" / key("sft", cfg) / "manifest.json").read_text())
    ev = home / "artifacts" / "eval" / key("eval", cfg)
    con = duckdb.connect()  # one per call: the seeds of a pair are measured in two threads
    metrics = con.sql(f"select model, budget, pass1_mean, over_budget, relerr_mean "
                      f"from read_parquet('{ev}/eval_metrics/*.parquet')").fetchall()  # fmt: skip
    rho = con.sql(f"select spearman from read_parquet('{ev}/eval_correlation/*.parquet') where model = 'sft'").fetchall()[0][0]
    sft_rows = {budget: (acc, over, rel) for model, budget, acc, over, rel in metrics if model == "sft"}
    reference = {budget: rel for model, budget, _, _, rel in metrics if model == "reference"}
    budgets = sorted(sft_rows)
    trained = [b for b in budgets if b not in cfg.budget_sampling.holdout]
    row = {
        "seed": seed,
        "sft_s": sft["stats"].get("train_runtime_s") or float("nan"),
        "spearman": float("nan") if rho is None else rho,  # None: every length equal (a collapsed student)
        "acc_small": sft_rows[budgets[0]][0],
        "acc_best": max(acc for acc, _, _ in sft_rows.values()),
        "over_max": max(sft_rows[b][1] for b in trained),
        "relerr_gap": max(sft_rows[b][2] - reference[b] for b in budgets),
        "per_budget": {b: {"acc": sft_rows[b][0], "over": sft_rows[b][1], "gap": sft_rows[b][2] - reference[b]}
                       for b in budgets},  # fmt: skip
        "holdout": list(cfg.budget_sampling.holdout),
    }
    row["checks"] = [row["spearman"] >= MIN_SPEARMAN, row["acc_best"] - row["acc_small"] >= MIN_ACCURACY_GAIN,
                     row["over_max"] <= MAX_OVER_BUDGET, row["relerr_gap"] <= MAX_RELERR_GAP]  # fmt: skip
    return row


def print_table(rows: list[dict]) -> None:
    print(f"{'seed':>4} {'sft s':>7} {'rho':>6} {'acc@min':>7} {'acc@best':>8} {'over max':>8} {'rel gap':>7}  "
          f"rho gain over rel  all")  # fmt: skip
    for r in rows:
        marks = "   ".join("P" if ok else "F" for ok in r["checks"])
        print(f"{r['seed']:>4} {r['sft_s']:7.0f} {r['spearman']:6.3f} {r['acc_small']:7.3f} {r['acc_best']:8.3f} "
              f"{r['over_max']:8.3f} {r['relerr_gap']:+7.3f}  {marks}   {'PASS' if all(r['checks']) else 'FAIL'}")  # fmt: skip
    if rows:
        passed = sum(all(r["checks"]) for r in rows)
        secs = [r["sft_s"] for r in rows]
        print(f"{passed} of {len(rows)} seeds pass; SFT {sum(secs) / len(secs):.0f} s mean ({min(secs):.0f}-{max(secs):.0f})")


def write_table(path: Path, rows: list[dict], settings: str, parallel: int) -> None:
    """The table printed, and per budget the mean (min to max) over the seeds, as markdown for README."""
    rows = sorted(rows, key=lambda r: r["seed"])
    side = "two runs side by side" if parallel == 2 else "one run at a time"
    per_seed = [[str(r["seed"]), f"{r['sft_s']:.0f}", f"{r['spearman']:.3f}", f"{100 * r['acc_small']:.1f}%",
                 f"{100 * r['acc_best']:.1f}%", f"{100 * r['over_max']:.1f}%", f"{r['relerr_gap']:+.3f}",
                 "pass" if all(r["checks"]) else "FAIL: " + ", ".join(n for n, ok in zip(CRITERIA, r["checks"]) if not ok)]
                for r in rows]  # fmt: skip
    budgets = sorted(rows[0]["per_budget"])
    label = {b: f"{b} (unseen)" if b in rows[0]["holdout"] else str(b) for b in budgets}
    figures = [
        ["SFT accuracy", *(spread([r["per_budget"][b]["acc"] for r in rows], percent=True) for b in budgets)],
        ["SFT over budget", *(spread([r["per_budget"][b]["over"] for r in rows], percent=True) for b in budgets)],
        ["relative error − reference's", *(spread([r["per_budget"][b]["gap"] for r in rows], signed=True) for b in budgets)],
    ]  # fmt: skip
    passed = sum(all(r["checks"]) for r in rows)
    text = "\n".join([
        f"`bench/demo/seeds.py`, {settings}: {passed} of {len(rows)} seeds meet every criterion.",
        f"Machine: {machine(f'1 torch thread per run, {side}')}.", "",
        markdown(["seed", "SFT s", "ρ", "accuracy at the smallest budget", "at the best", "most over budget (trained budgets)",
                  "relative error − reference's (worst budget)", "criteria"], per_seed),  # fmt: skip
        f"Per budget, mean (min to max) over the {len(rows)} seeds:", "",
        markdown(["budget", *(label[b] for b in budgets)], figures),
    ])  # fmt: skip
    path.write_text(text)
    print(f"table written to {path}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--home", type=Path, required=True, help="a home holding the demo's upstream artifacts")
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--parallel", type=int, choices=(1, 2), default=1, help="runs at a time (2 cores here)")
    parser.add_argument("--keep-going", action="store_true", help="run every seed even after one fails")
    parser.add_argument("--table", type=Path, help="also write the table as markdown (for README) to this file")
    parser.add_argument("extra", nargs="*", help="more `bard run` options: --set key=value ...")
    opts = parser.parse_args()
    extra = [item for item in opts.extra if item != "--set"]  # the runs get each back as --set item
    seeds = [int(s) for s in opts.seeds.split(",")]
    rows: list[dict] = []

    def one(seed: int) -> dict:
        run_seed(opts.home, opts.config, seed, extra)
        row = measure(opts.home, opts.config, seed, extra)
        print(f"seed {seed}: {'PASS' if all(row['checks']) else 'FAIL'}", flush=True)
        return row

    with ThreadPoolExecutor(opts.parallel) as pool:
        for start in range(0, len(seeds), opts.parallel):
            batch = list(pool.map(one, seeds[start:start + opts.parallel]))
            rows += batch
            if not opts.keep_going and not all(all(r["checks"]) for r in batch):
                break
    print(" ".join(extra) or "the demo's settings")
    print_table(sorted(rows, key=lambda r: r["seed"]))
    if opts.table and rows:
        write_table(opts.table, rows, " ".join(extra) or "the demo's settings", opts.parallel)


if __name__ == "__main__":
    main()
