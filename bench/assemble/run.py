"""Stage `assemble` at paper scale: a synthetic upstream of about 1.3M samples (teacher chains and
compressions with realistic thinking lengths), then the stage, timed, with its peak memory.

    .venv/bin/python bench/assemble/run.py [--problems 150000] [--words 1700] [--home DIR] [--keep]

The stage runs in a child process, so its peak resident memory (DuckDB's buffers included) is measured
apart from writing the upstream. Reference on the 2-core machine (DESIGN.md): a DuckDB shuffle-and-copy
of 1.3M such rows takes about 126 s at a 4 GB limit; the target is the whole stage within 2.5x that
and under 4 GiB peak.
"""

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import pyarrow.compute as pc  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from bard_core.config import load_config  # noqa: E402
from tasks import graph  # noqa: E402
from tests.tasks.synthetic_upstream import write_upstream  # noqa: E402

REFERENCE_SHUFFLE_S = 126.0


def config_for(home: Path):
    source = home / "problems.jsonl"
    return load_config(None, [
        f'problems.sources=[{{"kind":"jsonl","path":"{source}","fields":{{"uid":"id"}}}}]', "problems.shard_rows=50000",
        "budget_sampling.mode=uniform", "budget_sampling.min_budget=100", "budget_sampling.max_budget=4000",
        "assemble.memory_limit=3GB", "assemble.standard_per_problem=2",
    ], home=str(home))  # fmt: skip


def run_stage(home: Path) -> None:
    """The child: the stage alone."""
    started = time.perf_counter()
    manifest = graph.build("assemble", config_for(home))
    elapsed = time.perf_counter() - started
    mix = manifest.stats["mix"]
    print(f"assemble: {elapsed:.0f} s = {elapsed / REFERENCE_SHUFFLE_S:.2f}x the 126 s shuffle-and-copy reference")
    print(f"sft_dataset: {mix['budget']:,} budget-aware + {mix['standard']:,} standard rows "
          f"(standard fraction {mix['standard_fraction']}); rl_prompts: {manifest.stats['rl_prompts']:,}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--problems", type=int, default=150_000)
    parser.add_argument("--words", type=int, default=1700, help="mean thinking words per teacher chain")
    parser.add_argument("--home", default=None)
    parser.add_argument("--keep", action="store_true", help="keep the home directory")
    parser.add_argument("--only-stage", action="store_true", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    home = Path(opts.home or tempfile.mkdtemp(prefix="bard-bench-assemble-"))
    if opts.only_stage:
        return run_stage(home)

    home.mkdir(parents=True, exist_ok=True)
    with open(home / "problems.jsonl", "w") as f:
        for i in range(opts.problems):
            f.write(json.dumps({"id": i, "question": f"Problem {i}: what is {i} plus {i % 97} times {i % 13}?",
                                "answer": str(i + (i % 97) * (i % 13))}) + "\n")  # fmt: skip
    config = config_for(home)
    started = time.perf_counter()
    graph.build("problems", config)
    samples, rewrites = write_upstream(config, samples=4, budgets=3, words=opts.words, shard_rows=20_000)
    n_rows = samples.rows() + rewrites.rows()
    files = samples.files("teacher_samples") + rewrites.files("compressions")
    size = sum(Path(f).stat().st_size for f in files)
    chars = sum(pc.sum(pc.utf8_length(pq.read_table(f, columns=["thinking"]).column(0))).as_py() for f in files)
    print(f"upstream: {samples.rows():,} teacher samples + {rewrites.rows():,} compressions = {n_rows:,} rows, "
          f"mean thinking {chars / n_rows:,.0f} characters, {size / 1e9:.1f} GB zstd Parquet, "
          f"written in {time.perf_counter() - started:.0f} s")  # fmt: skip

    subprocess.run([sys.executable, __file__, "--only-stage", "--home", str(home)], check=True)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    print(f"peak RSS of the stage's process: {peak:.2f} GiB")
    if not opts.keep and not opts.home:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
