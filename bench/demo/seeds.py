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
from criteria import print_table, seed_row, table_markdown  # noqa: E402  (bench/demo/, beside this script)
from tables import machine  # noqa: E402
from tasks.graph import key  # noqa: E402

BARD = str(Path(sys.executable).with_name("bard"))
EVAL_MODELS = ("eval.models=[{name: reference, generation: {backend: scripted, role: reference, "
               "tokenizer: configs/demo-tokenizer.json}}, {name: sft, model: sft}]")  # fmt: skip


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
                      f"from read_parquet('{ev}/eval_metrics/*.parquet')").df().to_dict("records")  # fmt: skip
    rho = con.sql(f"select spearman from read_parquet('{ev}/eval_correlation/*.parquet') where model = 'sft'").fetchall()[0][0]
    sft_s = sft["stats"].get("train_runtime_s") or float("nan")
    return seed_row(seed, sft_s, metrics, rho, list(cfg.budget_sampling.holdout))


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
    settings = " ".join(extra) or "the demo's settings"
    print(settings)
    print_table(sorted(rows, key=lambda r: r["seed"]))
    if opts.table and rows:
        side = "two runs side by side" if opts.parallel == 2 else "one run at a time"
        opts.table.write_text(table_markdown(rows, f"`bench/demo/seeds.py`, {settings}", machine(f"1 torch thread per run, {side}")))
        print(f"table written to {opts.table}")


if __name__ == "__main__":
    main()
