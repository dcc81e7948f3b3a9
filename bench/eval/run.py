"""Evaluation throughput on a tiny model on this machine, through the real `eval` stage.

    .venv/bin/python bench/eval/run.py [--problems 40] [--samples 4] [--batch-size 16]

A tiny Qwen3-architecture model (hidden 128, 4 layers, random weights, word-level vocabulary) is swept over
budgets 16, 32, 64 in both modes (budget text; the truncation baseline), k samples each, hf backend, one
torch thread, one engine. Prints samples per second (stage time, engine start-up included) and per mode.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bard_core.config import load_config  # noqa: E402
from tasks import graph  # noqa: E402
from tests.bard_core.generation.local_models import build_tiny_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--problems", type=int, default=40)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=16)
    opts = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="bard-bench-eval-"))
    model = build_tiny_model(home / "model", hidden_size=128, layers=4)
    source = home / "toy.jsonl"
    source.write_text("".join(json.dumps({"question": f"one plus {i} is", "answer": str(i + 1)}) + "\n" for i in range(opts.problems)))
    for mode in ("budget", "truncate"):
        config = load_config(None, [
            f'problems.sources=[{{"kind":"jsonl","path":"{source}","split":"test"}}]', f"budget.tokenizer={model}/tokenizer.json",
            f"eval.models=[{{name: tiny, model: '{model}', mode: {mode}}}]", "eval.budgets=[16, 32, 64]",
            f"eval.samples={opts.samples}", f"eval.generation={{backend: hf, num_threads: 1, batch_size: {opts.batch_size}}}",
            "eval.answer_tokens=16", "ray.num_cpus=1",
            "budget.tokenizer_mismatch_reason=a timing bench, the demo's student and compressor are not used",
        ], home=str(home / "home"))  # fmt: skip
        graph.build("problems", config)
        start = time.perf_counter()
        manifest = graph.build("eval", config)
        seconds = time.perf_counter() - start
        samples = manifest.rows("eval_samples")
        print(f"{mode:>8}: {samples} samples in {seconds:.1f} s = {samples / seconds:.1f} samples/s")


if __name__ == "__main__":
    main()
