"""How the evaluation's chunk size (`eval.commit_rows`) moves the hf engine's generation time on the demo's sweep.

    .venv/bin/python bench/eval/chunks.py MODEL_DIR [--repeat 2] [--threads 1]

MODEL_DIR: a trained demo student (`<home>/artifacts/sft/<key>/model`). The demo's sweep for one model, with the
eval stage's own prompts and sampling (`bard_core.evaluate`): 200 held-out arithmetic problems x budgets 8-128,
greedy, max tokens 1.5 x budget + 16, batch 64, one engine loaded once. The
problems are sent in chunks of 10, 50 and 200 as the eval stage sends a chunk of `commit_rows` problems; the engine
batches each chunk's requests by max tokens, so a small chunk mixes budgets in a batch, which runs to its longest.
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bard_core import arithmetic, evaluate  # noqa: E402
from bard_core.config import load_config  # noqa: E402
from bard_core.config.generation import HFBackendConfig  # noqa: E402
from bard_core.generation.hf_backend import HFBackend  # noqa: E402
from bard_core.generation.protocol import GenerationRequest  # noqa: E402

DEMO = load_config(Path(__file__).resolve().parents[2] / "configs" / "demo.yaml")
BUDGETS = DEMO.eval.budgets
SFT = next(m for m in DEMO.eval.models if m.name == "sft")


def requests(problems: list[dict]) -> list[GenerationRequest]:
    """The eval stage's own requests for the demo's SFT model (`bard_core.evaluate`)."""
    return [GenerationRequest(uid=f"{p['uid']}/{b}", messages=evaluate.messages(p["question"], b, SFT, DEMO),
                              sampling=evaluate.sampling(p["uid"], b, evaluate.max_tokens(b, DEMO), DEMO))
            for p in problems for b in BUDGETS]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    opts = parser.parse_args()
    engine = HFBackend(HFBackendConfig(backend="hf", model=opts.model, batch_size=64, num_threads=opts.threads))
    problems = arithmetic.problems(DEMO.eval.limit, 1)  # the demo's held-out source: seed 1
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
