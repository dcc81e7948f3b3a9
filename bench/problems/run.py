"""Cold and cached wall time of `bard run --stages problems` (the demo profile unless --config).

    .venv/bin/python bench/problems/run.py [--config F] [--repeat 3]

Each cold run uses a fresh artifact home (so everything is computed: Prefect ephemeral API start,
Ray start, reading and sharding the sources); the cached run reuses that home.
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BARD = str(Path(sys.executable).with_name("bard"))


def timed(args: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run([BARD, *args], check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default=None)
    parser.add_argument("--repeat", type=int, default=3)
    opts = parser.parse_args()
    extra = ["--config", opts.config] if opts.config else []
    cold, cached = [], []
    for _ in range(opts.repeat):
        home = tempfile.mkdtemp(prefix="bard-bench-")
        cold.append(timed(["run", "--stages", "problems", "--home", home, *extra]))
        cached.append(timed(["run", "--stages", "problems", "--home", home, *extra]))
    c, h = statistics.median(cold), statistics.median(cached)
    print(f"cold   median {c:6.1f} s  (runs: {', '.join(f'{x:.1f}' for x in cold)})")
    print(f"cached median {h:6.1f} s  (runs: {', '.join(f'{x:.1f}' for x in cached)})")
    print(f"cached / cold = {h / c:.1%}")


if __name__ == "__main__":
    main()
