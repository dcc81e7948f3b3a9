"""The demo's SFT and GRPO on a GPU, through the plain-process entry that runs a TRL recipe on any GPU node
(`python -m bard_core.training`), on several seeds at once; each model evaluated as the eval stage does
(`bard_core.evaluate`, the hf engine on the GPU) and checked against the demo's criteria (bench/demo/criteria.py).

    python bench/gpu/demo.py --sft-data DIR --rl-data DIR --problems DIR [--seeds 0,1,2,3,4] [--grpo-seed 0] \
        [--out DIR] [--table FILE] [--set sft.X=Y ...]

The DIRs hold the demo's Parquet artifacts (`bard run --stages problems,teacher,compress,assemble` writes them):
the assemble stage's sft_dataset/ and rl_prompts/, the problems stage's problems/ (its test split is the
evaluation's 200 problems). Each seed S trains with sft.seed = student.seed = S on the demo's settings (TRL
trains in bf16 mixed precision on a GPU), in its own process, all seeds at once; it needs neither Ray, Prefect
nor DuckDB (the GPU machine here has none of them). Prints one row per seed as `bench/demo/seeds.py` does, the
GRPO model's figures beside its SFT model's, and the seconds each part took.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench" / "demo"))  # criteria.py, tables.py

from criteria import print_table, seed_row, table_markdown  # noqa: E402
from tables import machine  # noqa: E402

from bard_core.config import load_config  # noqa: E402
from bard_core.config.loader import dump_config  # noqa: E402


def parquet_files(folder: str) -> list[str]:
    return sorted(str(p) for p in Path(folder).glob("*.parquet"))


def evaluate(config, model_dirs: dict[str, str], problems: list[dict]) -> tuple[list[dict], dict, float]:
    """The eval stage's sweep for the scripted reference and each named model directory: its metric rows,
    Spearman's rho per model, and the seconds it took."""
    from pydantic import TypeAdapter

    from bard_core import evaluate as stage
    from bard_core.config.generation import GenerationBackendConfig
    from bard_core.generation import make_backend
    from bard_core.metrics import budget_metrics, length_correlation

    started = time.perf_counter()
    reference = next(m for m in config.eval.models if m.name == "reference")
    rows = stage.sample(problems, make_backend(TypeAdapter(GenerationBackendConfig).validate_python(reference.generation)),
                        config, reference, "")  # fmt: skip
    sft = next(m for m in config.eval.models if m.name == "sft")
    for name, folder in model_dirs.items():
        engine = TypeAdapter(GenerationBackendConfig).validate_python({**config.eval.generation, "model": folder})
        rows += stage.sample(problems, make_backend(engine), config, sft.model_copy(update={"name": name}), folder)
    rho = {c["model"]: c["spearman"] for c in length_correlation(rows)}
    return budget_metrics(rows, config.reward.tau), rho, time.perf_counter() - started


def train(recipe: str, config_file: Path, out: Path, data: list[str], model: str | None = None) -> float:
    """`python -m bard_core.training RECIPE ...` in its own process (its output to OUT.log); its wall seconds."""
    started = time.perf_counter()
    extra = ["--model", model] if model else []
    with open(f"{out}.log", "w") as log:
        done = subprocess.run([sys.executable, "-m", "bard_core.training", recipe, str(config_file), str(out), *data, *extra],
                              cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"{recipe} failed ({done.returncode}): see {out}.log")
    return time.perf_counter() - started


def one_seed(opts, seed: int) -> None:
    """SFT on one seed, its evaluation, and for --grpo-seed GRPO from it and that model's evaluation too."""
    out = Path(opts.out) / f"seed-{seed}"
    out.mkdir(parents=True, exist_ok=True)
    overrides = [f"sft.seed={seed}", f"student.seed={seed}", *opts.overrides]
    config = load_config(ROOT / "configs" / "demo.yaml", overrides, home=str(out / "home"))
    config_file = out / "config.yaml"
    config_file.write_text(dump_config(config))
    result = {"seed": seed, "sft_wall_s": train("sft", config_file, out / "sft", parquet_files(opts.sft_data))}
    result["sft_s"] = json.loads((out / "sft" / "metrics.json").read_text())["train"]["train_runtime"]
    problems = pq.read_table(parquet_files(opts.problems)).to_pylist()
    problems = sorted((p for p in problems if p["split"] in config.eval.splits), key=lambda p: (p["source"], p["uid"]))
    models = {"sft": str(out / "sft" / "model")}
    if seed == opts.grpo_seed:
        result["grpo_wall_s"] = train("grpo", config_file, out / "grpo", parquet_files(opts.rl_data), models["sft"])
        result["grpo_steps"] = json.loads((out / "grpo" / "metrics.json").read_text())["steps"]
        models["grpo"] = str(out / "grpo" / "model")
    result["metrics"], result["rho"], result["eval_s"] = evaluate(config, models, problems[: config.eval.limit])
    result["holdout"] = list(config.budget_sampling.holdout)
    (out / "result.json").write_text(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sft-data", required=True)
    parser.add_argument("--rl-data", required=True)
    parser.add_argument("--problems", required=True)
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--grpo-seed", type=int, default=0, help="the seed whose SFT model GRPO starts from")
    parser.add_argument("--out", default="/tmp/bard-gpu-demo")
    parser.add_argument("--table", type=Path, help="also write the table as markdown to this file")
    parser.add_argument("--set", action="append", default=[], dest="overrides", help="config override, e.g. sft.max_steps=5")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a worker: this seed alone
    opts = parser.parse_args()
    if opts.one is not None:
        return one_seed(opts, opts.one)
    import torch

    seeds = [int(s) for s in opts.seeds.split(",")]
    started = time.perf_counter()
    workers = {s: subprocess.Popen([sys.executable, __file__, *sys.argv[1:], "--one", str(s)]) for s in seeds}
    failed = [s for s, w in workers.items() if w.wait() != 0]
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    print(f"{len(seeds)} seeds at once in {time.perf_counter() - started:.0f} s on {device}"
          + (f"; failed: {failed}" if failed else ""))  # fmt: skip
    results = [json.loads((Path(opts.out) / f"seed-{s}" / "result.json").read_text()) for s in seeds if s not in failed]
    rows = [seed_row(r["seed"], r["sft_s"], r["metrics"], r["rho"]["sft"], r["holdout"]) for r in results]
    print_table(rows)
    for r in results:
        print(f"seed {r['seed']}: SFT process {r['sft_wall_s']:.0f} s (trainer {r['sft_s']:.0f} s), evaluation "
              f"{r['eval_s']:.0f} s" + (f", GRPO process {r['grpo_wall_s']:.0f} s ({r['grpo_steps']} steps)" if "grpo_wall_s" in r else ""))  # fmt: skip
        if "grpo" in r["rho"]:
            grpo = seed_row(r["seed"], r["grpo_wall_s"], r["metrics"], r["rho"]["grpo"], r["holdout"], model="grpo")
            print(f"  GRPO from it: rho {grpo['spearman']:.3f}, accuracy at the smallest budget {grpo['acc_small']:.3f}, "
                  f"at the best {grpo['acc_best']:.3f}, most over budget (trained) {grpo['over_max']:.3f}, relative "
                  f"error - reference's {grpo['relerr_gap']:+.3f}; per budget accuracy / over budget: "
                  + ", ".join(f"{b}: {v['acc']:.3f} / {v['over']:.3f}" for b, v in grpo["per_budget"].items()))  # fmt: skip
    if opts.table and rows:
        where = f"{device}, TRL in bf16 mixed precision, {len(seeds)} seeds at once"
        opts.table.write_text(table_markdown(rows, "`bench/gpu/demo.py`, the demo's settings", machine(where)))


if __name__ == "__main__":
    main()
