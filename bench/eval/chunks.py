"""How the evaluation's chunk size (`eval.commit_rows`) moves the hf engine's generation time on the demo's sweep.

    .venv/bin/python bench/eval/chunks.py MODEL_DIR [--repeat 2] [--threads 1]

MODEL_DIR: a trained demo student (`<home>/artifacts/sft/<key>/model`). The demo's sweep for one model: 200 held-out
arithmetic problems x budgets 8-128, greedy, max tokens 1.5 x budget + 16, batch 64, one engine loaded once. The
problems are sent in chunks of 10, 50 and 200 as the eval stage sends a chunk of `commit_rows` problems; the engine
batches each chunk's requests by max tokens, so a small chunk mixes budgets in a batch, which runs to its longest.
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bard_core import arithmetic  # noqa: E402
from bard_core.config.generation import HFBackendConfig, SamplingParams  # noqa: E402
from bard_core.generation.hf_backend import HFBackend  # noqa: E402
from bard_core.generation.protocol import GenerationRequest  # noqa: E402

BUDGETS = [8, 16, 24, 32, 48, 64, 96, 128]


def requests(problems: list[dict]) -> list[GenerationRequest]:
    return [GenerationRequest(uid=f"{p['uid']}/{b}", sampling=SamplingParams(temperature=0.0, max_tokens=int(1.5 * b) + 16),
                              messages=[{"role": "user", "content": f"{p['question']}\nThink for at most {b} tokens ."}])
            for p in problems for b in BUDGETS]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    opts = parser.parse_args()
    engine = HFBackend(HFBackendConfig(backend="hf", model=opts.model, batch_size=64, num_threads=opts.threads))
    problems = arithmetic.problems(200, 1)
    engine.generate(requests(problems[:8]))  # warm-up
    for round_ in range(opts.repeat):
        for chunk in (10, 50, 200):
            started = time.perf_counter()
            for i in range(0, len(problems), chunk):
                engine.generate(requests(problems[i : i + chunk]))
            print(f"round {round_ + 1}: chunks of {chunk} problems: {time.perf_counter() - started:.1f} s "
                  f"for {len(problems) * len(BUDGETS)} samples", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
