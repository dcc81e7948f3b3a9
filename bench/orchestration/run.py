"""What orchestration costs: the whole pipeline with every stage finished (a no-op) against the cold run.

    .venv/bin/python bench/orchestration/run.py [--home DIR] [--repeat N] [--config F] [key=value ...]

Runs `bard run` (the demo profile unless --config says otherwise; key=value as with --set) cold into a fresh home, or takes DIR
as it is (then the cold time is not measured again, and says so). Then, with every artifact finished, it times
N times each:
- `bard run`: the CLI finds every manifest and starts neither Prefect nor Ray;
- the `pipeline` flow called as a served or scheduled run calls it (Prefect's API started, each stage's key
  computed, every stage reused, the catalog views re-pointed), in a fresh process.
The target: a no-op below 5% of the cold demo run.
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BARD = str(Path(sys.executable).with_name("bard"))
FLOW_NOOP = """
import sys
from flows.pipeline import pipeline_flow
made = pipeline_flow(config=sys.argv[1], overrides=sys.argv[3:], home=sys.argv[2])
print(len(made), "stages reused")
"""


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--home", type=Path, default=None, help="a home where the pipeline already ran")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("sets", nargs="*", help="key=value overrides, as bard run --set")
    opts = parser.parse_args()
    home = opts.home or Path(tempfile.mkdtemp(prefix="bard-bench-orchestration-"))
    run = [BARD, "run", "--config", opts.config, "--home", str(home), *(a for s in opts.sets for a in ("--set", s))]
    cold = None if opts.home else timed(run)
    cli = [timed(run) for _ in range(opts.repeat)]
    flow = [timed([sys.executable, "-c", FLOW_NOOP, opts.config, str(home), *opts.sets]) for _ in range(opts.repeat)]
    print(f"profile {opts.config} {' '.join(opts.sets)}; home {home}")
    print(f"cold bard run:                       {cold:8.1f} s" if cold else "cold bard run:  not measured (--home given)")
    for name, times in (("no-op bard run (CLI)", cli), ("no-op pipeline flow (as served)", flow)):
        median = statistics.median(times)
        share = f" = {100 * median / cold:.1f}% of cold" if cold else ""
        print(f"{name:<36} {median:8.1f} s (median of {', '.join(f'{t:.1f}' for t in times)}){share}")


if __name__ == "__main__":
    main()
