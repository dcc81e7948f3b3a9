"""SFT and GRPO throughput of the tiny demo-sized student on this machine, through the real stages.

    .venv/bin/python bench/train/run.py [--sft-steps 40] [--grpo-steps 4]

The student is the demo's size (Qwen3 architecture, hidden 128, 4 layers, 4 heads, FFN 384) with a small
word-level tokenizer; the data is a synthetic upstream assembled by the real `assemble` stage. Prints SFT
tokens per second (tokens the trainer counted / train runtime) and GRPO seconds per step (8 prompts x 8
completions), one torch thread each.
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
from tests.tasks.synthetic_upstream import write_upstream  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sft-steps", type=int, default=40)
    parser.add_argument("--grpo-steps", type=int, default=4)
    opts = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="bard-bench-train-"))
    tokenizer = build_tiny_model(home / "vocab") / "tokenizer.json"
    source = home / "toy.jsonl"
    source.write_text("".join(json.dumps({"question": f"one plus {i} is", "answer": str(i + 1)}) + "\n" for i in range(400)))
    config = load_config(None, [
        f'problems.sources=[{{"kind":"jsonl","path":"{source}"}}]', f"student.tokenizer={tokenizer}",
        "budget_sampling={mode: uniform, min_budget: 8, max_budget: 128}",
        "budget.tokenizer_mismatch_reason=a timing bench, budgets stay counted in the demo's words",
        f"sft={{learning_rate: 0.002, max_steps: {opts.sft_steps}, batch_size: 64, save_steps: 1000, logging_steps: 10, max_length: 512, report_to: []}}",
        f"grpo={{max_steps: {opts.grpo_steps}, save_steps: 1000, report_to: []}}",
        "ray.num_cpus=1",
    ], home=str(home))  # fmt: skip
    graph.build("problems", config)
    write_upstream(config, samples=2, budgets=3, words=120)
    graph.build("assemble", config)

    trained = graph.build("sft", config)
    metrics = json.loads((Path(trained.path) / "metrics.json").read_text())
    runtime = metrics["train"]["train_runtime"]
    tokens = metrics["loss_curve"][-1]["num_tokens"]  # counted by TRL up to the last logged step
    rate = f"{tokens / runtime:,.0f} tokens/s" if tokens else "token count not logged"
    print(f"SFT: {metrics['steps']} steps x 64 sequences in {runtime:.1f} s: {rate}, "
          f"loss {metrics['loss_curve'][0]['loss']:.2f} -> {metrics['loss_curve'][-1]['loss']:.2f}")  # fmt: skip

    started = time.perf_counter()
    rl = graph.build("grpo", config)
    rl_metrics = json.loads((Path(rl.path) / "metrics.json").read_text())
    rl_runtime = rl_metrics["train"]["train_runtime"]
    print(f"GRPO: {rl_metrics['steps']} steps (8 prompts x 8 completions) in {rl_runtime:.1f} s: "
          f"{rl_runtime / rl_metrics['steps']:.1f} s/step (stage wall time {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
