"""Run a TRL recipe as a plain process (for example as a Ray job):

    python -m bard_core.training sft  CONFIG.yaml OUT_DIR DATA.parquet...
    python -m bard_core.training grpo CONFIG.yaml OUT_DIR DATA.parquet... --model SFT_MODEL_DIR

OUT_DIR receives `model/`, `metrics.json` and checkpoints, and a rerun resumes from them, as in the pipeline.
"""

from __future__ import annotations

import argparse
import json
import sys

from bard_core.config import load_config
from bard_core.errors import BardError
from bard_core.training import run_recipe


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bard_core.training", description=__doc__.split("\n\n")[0])
    parser.add_argument("recipe", choices=["sft", "grpo"])
    parser.add_argument("config", help="a bard YAML config (`bard config show` writes one)")
    parser.add_argument("out", help="output directory")
    parser.add_argument("data", nargs="+", help="Parquet files: sft_dataset for sft, rl_prompts for grpo")
    parser.add_argument("--model", help="grpo: the SFT model directory to start from")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        if args.recipe == "sft":
            from bard_core.training.sft_trl import TRLSFTRecipe

            recipe = TRLSFTRecipe(config, args.data, args.out)
        else:
            if not args.model:
                parser.error("grpo needs --model SFT_MODEL_DIR")
            from bard_core.training.grpo_trl import TRLGRPORecipe

            recipe = TRLGRPORecipe(config, args.model, args.data, args.out)
        metrics = run_recipe(recipe)
    except BardError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(json.dumps({"steps": metrics["steps"], "resumed_from": metrics["resumed_from"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
