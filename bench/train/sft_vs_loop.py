"""The demo's SFT through TRL (the stage's own recipe) against a minimal plain PyTorch loop, in one run.

    .venv/bin/python bench/train/sft_vs_loop.py [--steps 40] [--repeat 3] [--threads 2] [--set sft.X=Y ...]

Same model (the demo's student: Qwen3 architecture, hidden 128, 4 layers, 4 heads, FFN 384, built from config,
configs/demo-tokenizer.json), same rows, the same batches (TRL's own dataloader's: packed rows as the demo
ships, or each batch padded to its longest row with `--set sft.packing=false --set sft.batch_size=32`), same
optimizer (AdamW, the demo's learning rate, weight decay, warmup and warmup_stable_decay schedule, gradient
clipping at 1.0), loss on the completion only. The rows are the demo's: the real problems -> teacher -> compress
-> assemble stages of configs/demo.yaml on a smaller arithmetic problem set. Each run trains one epoch over the
first `steps x batch` rows (packed rows when packed) with a freshly built student, so the TRL and plain runs see
the same real (non-pad) tokens, and a third contender nearly as many (14 packed rows hold about the real tokens of
32 padded ones); a run's figure is its real tokens / its training wall time (the steps, and for TRL its end-of-run save; no start-up, no
tokenizing). TRL's losses are its logged means over `logging_steps`, the plain loop's are single steps. The
contenders are interleaved `--repeat` times, so a load that comes and goes (other test runs) hits both alike; the
load average is printed with each round. `--set` adds a third contender, TRL with these config overrides
(e.g. `sft.group_by_length=true`); `--plain-option compile` or `bf16` adds the plain loop with a compiled forward
or under bfloat16 autocast (with its rate after the first steps, which hold the compilation); `--profile` prints the TRL run's top functions (cProfile) instead.
`--rows DIR` trains on an sft_dataset folder already built (e.g. the demo's own; neither Ray nor Prefect needed).
On a GPU both train there, in bf16 mixed precision (as the recipe does); `--threads` is then the CPU threads.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bard_core.config import BardConfig, load_config  # noqa: E402

WARMUP_STEPS = 3  # a compiled forward compiles in its first steps; the rate after them is printed too


def demo_rows(home: Path, problems: int) -> list[str]:
    """The demo's sft_dataset files, built by the real stages on `problems` arithmetic problems."""
    from tasks import graph

    config = load_config(ROOT / "configs" / "demo.yaml", [
        f"problems.sources=[{{kind: arithmetic, size: {problems}, seed: 0, split: train}}, "
        "{kind: arithmetic, size: 20, seed: 1, split: test}]",
        "ray.num_cpus=1",
    ], home=str(home))  # fmt: skip
    for stage in ("problems", "teacher", "compress"):
        graph.build(stage, config)
    return graph.build("assemble", config).files("sft_dataset")


def sft_config(home: Path, steps: int, threads: int, overrides: list[str]) -> BardConfig:
    """The demo's SFT section for a one-epoch run of `steps` batches; the decay is a fifth of the run (the demo's
    150 steps of 1,161 would leave a short run without one)."""
    return load_config(ROOT / "configs" / "demo.yaml", [
        "sft.epochs=1", f"sft.num_threads={threads}", "sft.save_steps=100000", f"sft.lr_scheduler_kwargs={{num_decay_steps: {max(1, steps // 5)}}}",
        *overrides,
    ], home=str(home))  # fmt: skip


def trl_run(config: BardConfig, files: list[str], out: Path, steps: int, profile: bool = False) -> dict:
    """Train through the stage's recipe on its first `steps` batches of rows; the trainer's own loop is timed."""
    from transformers import TrainerCallback

    from bard_core.training.sft_trl import TRLSFTRecipe

    recipe = TRLSFTRecipe(config, files, out)
    recipe.setup()
    recipe.trainer.train_dataset = recipe.trainer.train_dataset.select(range(steps * config.sft.batch_size))
    times = {}

    class Clock(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            times["begin"] = time.perf_counter()

        def on_train_end(self, args, state, control, **kwargs):
            times["end"] = time.perf_counter()

    recipe.trainer.add_callback(Clock())
    if profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.runcall(recipe.train)
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(45)
    else:
        recipe.train()
    tokens = sum(len(ids) for ids in recipe.trainer.train_dataset["input_ids"])
    losses = [h["loss"] for h in recipe.trainer.state.log_history if "loss" in h]
    steps = recipe.trainer.state.global_step
    recipe.cleanup()
    return {"seconds": times["end"] - times["begin"], "tokens": tokens, "steps": steps, "losses": losses}


def plain_run(config: BardConfig, files: list[str], out: Path, steps: int, option: str = "") -> dict:
    """A minimal loop over the batches TRL's own dataloader makes of the same rows (padded to their longest row,
    or packed rows with `sft.packing`), with the same optimizer and schedule. `option`: "compile" compiles the
    model's forward (torch.compile, static shapes), "bf16" runs it under CPU autocast to bfloat16."""
    import torch
    from transformers import get_scheduler

    from bard_core.student import load_model, load_tokenizer
    from bard_core.training.sft_trl import TRLSFTRecipe

    cfg = config.sft
    recipe = TRLSFTRecipe(config, files, out)  # only for its batches: the data work is not timed
    recipe.setup()
    recipe.trainer.train_dataset = recipe.trainer.train_dataset.select(range(steps * cfg.batch_size))
    batches = list(recipe.trainer.get_train_dataloader())
    tokens = sum(len(ids) for ids in recipe.trainer.train_dataset["input_ids"])
    recipe.cleanup()
    torch.manual_seed(cfg.seed)
    tokenizer = load_tokenizer(config.student)
    torch.manual_seed(cfg.seed)
    model = load_model(config.student, tokenizer)
    on_gpu = torch.cuda.is_available()  # as the recipe: on a GPU, TRL trains there in bf16 mixed precision
    device = "cuda" if on_gpu else "cpu"
    model.to(device).train()
    if option == "compile":
        model.forward = torch.compile(model.forward, dynamic=False)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.learning_rate,
    )
    steps = len(batches)
    scheduler = get_scheduler(
        cfg.lr_scheduler, optimizer, num_warmup_steps=math.ceil(cfg.warmup_ratio * steps), num_training_steps=steps,
        scheduler_specific_kwargs=cfg.lr_scheduler_kwargs,
    )  # fmt: skip
    inputs = ("input_ids", "attention_mask", "position_ids", "labels")
    losses, started, warm = [], time.perf_counter(), None
    for i, batch in enumerate(batches):
        if i == WARMUP_STEPS:
            warm = time.perf_counter()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=on_gpu or option == "bf16"):
            loss = model(**{k: batch[k].to(device) for k in inputs if k in batch}).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    seconds = time.perf_counter() - started
    later = sum(int(b["labels"].numel()) for b in batches[WARMUP_STEPS:])  # positions, pads included
    return {"seconds": seconds, "tokens": tokens, "steps": steps, "losses": losses,
            "warm_rate": later / (started + seconds - warm) if warm else None}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps per run (batch: the demo's 14 packed rows)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of the contenders, interleaved")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the demo's sft.num_threads: 2)")
    parser.add_argument("--problems", type=int, default=1500, help="arithmetic problems the rows are built from")
    parser.add_argument("--set", action="append", default=[], dest="overrides", help="config override for TRL runs")
    parser.add_argument("--plain-option", action="append", default=[], choices=["compile", "bf16"],
                        help="add a plain-loop contender with torch.compile or bf16 autocast")
    parser.add_argument("--profile", action="store_true", help="profile one TRL run with cProfile and stop")
    parser.add_argument("--home", help="a bard home to keep the built rows in (reused when rerun)")
    parser.add_argument("--rows", help="an sft_dataset folder to train on instead of building one (no Ray needed)")
    opts = parser.parse_args()
    home = Path(opts.home or tempfile.mkdtemp(prefix="bard-bench-sft-"))
    files = sorted(str(f) for f in Path(opts.rows).glob("*.parquet")) if opts.rows else demo_rows(home, opts.problems)
    base = sft_config(home, opts.steps, opts.threads, [])
    trl_config = sft_config(home, opts.steps, opts.threads, opts.overrides)
    scratch = Path(tempfile.mkdtemp(prefix="sft-runs-", dir=home))
    if opts.profile:
        trl_run(trl_config, files, scratch / "profile", opts.steps, profile=True)
        return
    import torch

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    print(f"the demo's sft_dataset, batch {base.sft.batch_size} (packing {base.sft.packing}), {opts.steps} steps, "
          f"{opts.threads} threads, on {device}")  # fmt: skip
    contenders = {"TRL": lambda out: trl_run(base, files, out, opts.steps), "plain": lambda out: plain_run(base, files, out, opts.steps)}
    if opts.overrides:
        contenders[f"TRL {' '.join(opts.overrides)}"] = lambda out: trl_run(trl_config, files, out, opts.steps)
    for option in opts.plain_option:
        contenders[f"plain {option}"] = lambda out, option=option: plain_run(base, files, out, opts.steps, option)
    rates = {name: [] for name in contenders}
    for r in range(opts.repeat):
        figures = []
        for i, (name, run) in enumerate(contenders.items()):
            done = run(scratch / f"{r}-{i}")
            rates[name].append(done["tokens"] / done["seconds"])
            after = f", {done['warm_rate']:,.0f} positions/s after step {WARMUP_STEPS}" if done.get("warm_rate") else ""
            figures.append(f"{name} {rates[name][-1]:,.0f} tokens/s ({done['seconds']:.1f} s{after}, loss "
                           f"{done['losses'][0]:.2f} -> {done['losses'][-1]:.2f})")  # fmt: skip
        print(f"round {r + 1}: {'; '.join(figures)}; load average {os.getloadavg()[0]:.1f}")
    print(f"{done['tokens']:,} real tokens in the last run; tokens/s median (range) over {opts.repeat} rounds:")
    for name, got in rates.items():
        ratios = [p / t for p, t in zip(rates["plain"], got)]
        print(f"  {name}: {statistics.median(got):,.0f} ({min(got):,.0f}-{max(got):,.0f}), plain/this "
              f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})")  # fmt: skip


if __name__ == "__main__":
    main()
