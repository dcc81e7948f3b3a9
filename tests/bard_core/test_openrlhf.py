"""The openrlhf backend's command lines, checked against OpenRLHF 0.11.2's real argument parser.

OpenRLHF cannot be installed here with its dependencies; `make setup` puts its source (no dependencies) in
.venv/openrlhf-0.11.2. The parser is built inside each CLI's `if __name__ == "__main__":` block, so these
tests run that block's statements themselves: every `add_argument` call, `parse_args` on our arguments,
OpenRLHF's `hierarchize`, and its own checks after parsing (assertions on estimator, filtering, batch sizes),
stopping where it would start training.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import datetime
import importlib.util
import io
import json
import shlex
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from bard_core.budget import Budget
from bard_core.config import load_config
from bard_core.errors import BardError
from bard_core.scoring.reward import reward_label
from bard_core.training import openrlhf

SRC = Path(__file__).resolve().parents[2] / ".venv" / f"openrlhf-{openrlhf.VERSION}" / "openrlhf"


class ParsedArgs(Exception):
    """Raised in place of OpenRLHF's `train(args)`: parsing and every check before training passed."""


def run_openrlhf_cli(module: str, argv: list[str]):
    """Run `module`'s __main__ block on `argv` up to training; return (parser, hierarchized args).
    A rejected argument raises ValueError with argparse's message."""
    path = SRC / "cli" / f"{module.rsplit('.', 1)[1]}.py"
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make setup` (it installs OpenRLHF {openrlhf.VERSION}'s source)")
    tree = ast.parse(path.read_text())
    main = next(n for n in tree.body if isinstance(n, ast.If) and "__main__" in ast.unparse(n.test))
    # Its `from openrlhf.utils.config import hierarchize` would import torch and deepspeed: load that one
    # dependency-free module by path and drop the import statement.
    body = [s for s in main.body if not (isinstance(s, ast.ImportFrom) and (s.module or "").startswith("openrlhf"))]
    spec = importlib.util.spec_from_file_location("openrlhf_utils_config", SRC / "utils" / "config.py")
    config_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(config_module)

    def train(args):
        raise ParsedArgs(args)

    namespace = {"argparse": argparse, "datetime": datetime.datetime, "hierarchize": config_module.hierarchize, "train": train}
    code = compile(ast.Module(body=body, type_ignores=[]), str(path), "exec")
    stderr, old_argv = io.StringIO(), sys.argv
    sys.argv = [module] + argv
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            exec(code, namespace)
    except ParsedArgs as done:
        return namespace["parser"], done.args[0]
    except SystemExit:
        raise ValueError(stderr.getvalue().strip().splitlines()[-1]) from None
    finally:
        sys.argv = old_argv
    raise AssertionError(f"{module} did not reach train(args)")


def check_flags(module: str, argv: list[str]):
    """Parse `argv` as OpenRLHF does, and also require every flag to be spelled out in full (argparse would
    accept a unique prefix of a longer flag, which a later OpenRLHF release could make ambiguous)."""
    parser, args = run_openrlhf_cli(module, argv)
    unknown = [a for a in argv if a.startswith("--") and a not in parser._option_string_actions]
    assert not unknown, f"{module} has no flag(s) {unknown}"
    return args


def config(tmp_path, overrides=()):
    return load_config(overrides=list(overrides), home=str(tmp_path / "home"))


def entry_argv(entrypoint: str, module: str) -> list[str]:
    words = shlex.split(entrypoint)
    return words[words.index(module) + 1 :]


SFT_VARIANTS = [
    [],
    ["sft.max_steps=20", "sft.packing=true", "sft.openrlhf.gradient_checkpointing=false", "sft.epochs=3"],
    ["sft.openrlhf.zero_stage=3", "sft.openrlhf.param_dtype=fp16", "sft.openrlhf.gpus=4", "sft.batch_size=4",
     "sft.openrlhf.micro_batch_size=2", "sft.openrlhf.extra_args=['--ds.adam_offload']"],
]  # fmt: skip
GRPO_VARIANTS = [
    [],
    ["grpo.beta=0", "grpo.openrlhf.dynamic_filtering=false", "grpo.openrlhf.colocate_all=false",
     "grpo.openrlhf.advantage_estimator=dr_grpo", "grpo.openrlhf.gradient_checkpointing=false"],
    ["grpo.openrlhf.nodes=2", "grpo.openrlhf.gpus_per_node=4", "grpo.openrlhf.vllm_engines=2",
     "grpo.openrlhf.vllm_tensor_parallel_size=4", "grpo.prompts_per_step=32", "grpo.num_generations=16",
     "budget_sampling.mode=tiers", "budget_sampling.tiers=[100,200,400]", "grpo.openrlhf.extra_args=['--vllm.enforce_eager']"],
]  # fmt: skip


@pytest.mark.parametrize("overrides", SFT_VARIANTS)
def test_sft_command_parses_with_openrlhf(tmp_path, overrides):
    cfg = config(tmp_path, overrides)
    out = tmp_path / "out"
    entry = openrlhf.sft_entrypoint(cfg, "/models/student", "/data/sft.parquet", out)
    assert shlex.split(entry)[:5] == ["deepspeed", "--num_gpus", str(cfg.sft.openrlhf.gpus), "--module", openrlhf.SFT_MODULE]
    args = check_flags(openrlhf.SFT_MODULE, entry_argv(entry, openrlhf.SFT_MODULE))
    assert args.model.model_name_or_path == "/models/student"
    assert (args.data.dataset, args.data.input_key, args.data.output_key) == ("/data/sft.parquet", "prompt", "completion")
    assert args.data.apply_chat_template and args.data.max_len == cfg.sft.max_length
    assert args.train.batch_size == cfg.sft.batch_size * cfg.sft.gradient_accumulation_steps * cfg.sft.openrlhf.gpus
    assert args.train.max_epochs == int(cfg.sft.epochs) and args.adam.lr == cfg.sft.learning_rate
    assert args.ckpt.output_dir == str(out / "model") and args.ckpt.load_enable
    assert args.ds.packing_samples == cfg.sft.packing
    if cfg.sft.max_steps > 0:
        assert args.data.max_samples == cfg.sft.max_steps * args.train.batch_size


@pytest.mark.parametrize("overrides", GRPO_VARIANTS)
def test_grpo_command_parses_with_openrlhf(tmp_path, overrides):
    cfg = config(tmp_path, overrides)
    out = tmp_path / "out"
    entry = openrlhf.grpo_entrypoint(cfg, "/models/sft", "/data/rl.parquet", "/data/reward_func.py", out)
    assert shlex.split(entry)[:3] == ["python3", "-m", openrlhf.GRPO_MODULE]
    args = check_flags(openrlhf.GRPO_MODULE, entry_argv(entry, openrlhf.GRPO_MODULE))
    g, orl = cfg.grpo, cfg.grpo.openrlhf
    assert args.actor.model_name_or_path == "/models/sft"
    assert args.reward.remote_url == ["/data/reward_func.py"]  # OpenRLHF splits it on commas
    assert (args.data.prompt_dataset, args.data.input_key, args.data.label_key) == ("/data/rl.parquet", "prompt", "label")
    assert args.algo.advantage.estimator == orl.advantage_estimator
    assert args.critic.model_name_or_path is None  # no critic: a group baseline
    assert args.rollout.n_samples_per_prompt == g.num_generations and args.rollout.batch_size == g.prompts_per_step
    assert args.train.batch_size == g.prompts_per_step * g.num_generations
    assert args.rollout.max_new_tokens == Budget.from_config(cfg).completion_limit() >= cfg.budget_sampling.largest
    assert args.data.max_len == orl.prompt_max_tokens + args.rollout.max_new_tokens
    assert args.algo.kl.use_loss == (g.beta > 0) and args.algo.kl.init_coef == g.beta
    assert args.algo.dynamic_filtering_enable == orl.dynamic_filtering
    assert args.train.colocate_all == orl.colocate_all and args.vllm.enable_sleep == orl.colocate_all
    assert (args.actor.num_nodes, args.actor.num_gpus_per_node) == (orl.nodes, orl.gpus_per_node)
    assert (args.vllm.num_engines, args.vllm.tensor_parallel_size) == (orl.vllm_engines, orl.vllm_tensor_parallel_size)


def test_the_validation_rejects_what_openrlhf_rejects(tmp_path):
    """The check can fail: a misspelt extra flag, a bad choice, and OpenRLHF's own post-parse assertion."""
    cfg = config(tmp_path, ["grpo.openrlhf.extra_args=['--rollout.n_sample_per_prompt','4']"])
    argv = entry_argv(openrlhf.grpo_entrypoint(cfg, "m", "p", "r.py", tmp_path), openrlhf.GRPO_MODULE)
    with pytest.raises(ValueError, match="unrecognized arguments: --rollout.n_sample_per_prompt"):
        check_flags(openrlhf.GRPO_MODULE, argv)
    with pytest.raises(ValueError, match="invalid choice"):
        check_flags(openrlhf.GRPO_MODULE, argv[:-2] + ["--algo.advantage.estimator", "grpo"])
    with pytest.raises(AssertionError, match="n_samples_per_prompt"):  # dynamic filtering needs groups
        check_flags(openrlhf.GRPO_MODULE, argv[:-2] + ["--rollout.n_samples_per_prompt", "1"])
    with pytest.raises(AssertionError, match="has no flag"):  # a prefix argparse would quietly accept
        check_flags(openrlhf.SFT_MODULE, ["--model.model_name_or", "m"])


def test_settings_openrlhf_cannot_take_are_refused_before_any_work(tmp_path):
    with pytest.raises(BardError, match="sft.epochs: OpenRLHF trains whole epochs"):
        openrlhf.sft_args(config(tmp_path, ["sft.epochs=1.5"]), "m", "d", tmp_path)
    with pytest.raises(BardError, match="not a multiple of sft.openrlhf.micro_batch_size"):
        openrlhf.sft_args(config(tmp_path, ["sft.batch_size=3", "sft.openrlhf.micro_batch_size=2"]), "m", "d", tmp_path)


def _rl_prompts(path: Path, budgets: list[int | None], splits: list[str]) -> Path:
    import pyarrow as pa

    rows = [
        {"prompt": [{"role": "user", "content": f"q{i}"}], "label": reward_label(str(i), b), "budget": b, "split": s}
        for i, (b, s) in enumerate(zip(budgets, splits))
    ]
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def test_rl_prompt_file_has_one_episode_of_max_steps(tmp_path):
    source = _rl_prompts(tmp_path / "rl.parquet", [100, 200, 300, None, 50], ["train", "train", "train", "train", "test"])
    cfg = config(tmp_path, ["grpo.max_steps=5", "grpo.prompts_per_step=2"])
    out = tmp_path / "openrlhf" / "rl_prompts.parquet"
    assert openrlhf.write_rl_prompts([str(source)], out, cfg) == 10
    table = pq.read_table(out)
    assert table.column_names == ["prompt", "label"]
    labels = [json.loads(x) for x in table["label"].to_pylist()]
    assert {int(x["answer"]) for x in labels} == {0, 1, 2, 3}  # train rows only, each used
    assert sorted(int(x["answer"]) for x in labels[:4]) == [0, 1, 2, 3]  # a whole pass before any repeat
    assert table.to_pylist() == pq.read_table(openrlhf.write_rl_prompts([str(source)], out, cfg) and out).to_pylist()


def test_empty_train_split_is_named(tmp_path):
    source = _rl_prompts(tmp_path / "rl.parquet", [100], ["test"])
    with pytest.raises(BardError, match="no train rows in .*rl.parquet"):
        openrlhf.write_rl_prompts([str(source)], tmp_path / "x.parquet", config(tmp_path))
