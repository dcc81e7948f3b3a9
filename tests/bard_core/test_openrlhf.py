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


# The default profile is the demo's, whose warmup_stable_decay OpenRLHF cannot be given (its num_decay_steps)
COSINE = ["sft.lr_scheduler=cosine", "sft.lr_scheduler_kwargs={}"]
SFT_VARIANTS = [
    COSINE,
    ["sft.lr_scheduler=cosine_with_min_lr", "sft.lr_scheduler_kwargs={min_lr_rate: 0.2}", "sft.warmup_ratio=0.1"],
    [*COSINE, "sft.max_steps=20", "sft.packing=true", "sft.openrlhf.gradient_checkpointing=false", "sft.epochs=3"],
    [*COSINE, "sft.openrlhf.zero_stage=3", "sft.openrlhf.param_dtype=fp16", "sft.openrlhf.gpus=4", "sft.batch_size=4",
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
    assert (args.lr_scheduler, args.lr_warmup_ratio) == (cfg.sft.lr_scheduler, cfg.sft.warmup_ratio)
    assert args.min_lr_ratio == cfg.sft.lr_scheduler_kwargs.get("min_lr_rate", 0.1)  # 0.1: OpenRLHF's own default
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
        openrlhf.sft_args(config(tmp_path, [*COSINE, "sft.batch_size=3", "sft.openrlhf.micro_batch_size=2"]), "m", "d", tmp_path)
    # the demo's schedule: OpenRLHF would drop num_decay_steps and the job would fail on the cluster
    with pytest.raises(BardError, match=r"sft.lr_scheduler_kwargs \{'num_decay_steps': 150\}: OpenRLHF"):
        openrlhf.sft_args(config(tmp_path), "m", "d", tmp_path)
    with pytest.raises(BardError, match="sft.lr_scheduler_kwargs"):  # a floor only cosine_with_min_lr has
        openrlhf.sft_args(config(tmp_path, ["sft.lr_scheduler=cosine", "sft.lr_scheduler_kwargs={min_lr_rate: 0.2}"]), "m", "d", tmp_path)


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


STUDENT = [*COSINE, "student.tokenizer=null", "budget.tokenizer_mismatch_reason=a test, budgets stay counted in the demo words"]
ROW = {"prompt": [{"role": "user", "content": "What is 1 + 1?"}],
       "completion": [{"role": "assistant", "content": "<think>one and one make two</think> \\boxed{2}"}]}  # fmt: skip


def test_the_sft_job_starts_from_the_student_trl_would_train(smollm2_dir, tmp_path):
    """OpenRLHF loads the student by path. SmolLM2's vocabulary has no one-token think tags, so the job is given
    bard's prepared copy (the tags added, the embeddings grown to match, the template's end of turn as EOS), as the
    TRL recipe would train; it is written once, and a rerun that follows a running job leaves it alone."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg, out = config(tmp_path, [*STUDENT, f"student.model={smollm2_dir}"]), tmp_path / "out"
    assert len(AutoTokenizer.from_pretrained(smollm2_dir)("<think>", add_special_tokens=False)["input_ids"]) > 1
    path = openrlhf.write_student(cfg, out, ROW)
    assert path == openrlhf.student_dir(out)
    assert not any(p.is_symlink() for p in Path(path).iterdir())  # a copy of its own, not links to the checkpoint
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in ("<think>", "</think>")] == [1, 1]
    assert AutoModelForCausalLM.from_pretrained(path).get_input_embeddings().num_embeddings == len(tokenizer)
    assert tokenizer.eos_token == "<|im_end|>"
    argv = entry_argv(openrlhf.sft_entrypoint(cfg, openrlhf.student_dir(out), "d.parquet", out), openrlhf.SFT_MODULE)
    assert check_flags(openrlhf.SFT_MODULE, argv).model.model_name_or_path == path
    (Path(path) / "marker").write_text("the job is reading this copy")
    openrlhf.write_student(cfg, out, ROW)
    assert (Path(path) / "marker").exists() and not Path(f"{path}.partial").exists()


def test_a_checkpoint_bard_uses_unchanged_goes_to_the_job_as_it_is(tmp_path):
    """The Qwen3 vocabulary (one-token think tags), EOS `<|im_end|>` and bard's ChatML: nothing to prepare, so the
    job's student is the checkpoint's own files, linked (no copy of its weights)."""
    from bard_core.student import CHAT_TEMPLATE
    from tests.bard_core.conftest import qwen3_tokenizer, save_tiny_model

    tokenizer = qwen3_tokenizer("<|im_end|>", CHAT_TEMPLATE)
    model = save_tiny_model(tmp_path / "qwen3", tokenizer, tokenizer.eos_token_id, tokenizer.pad_token_id)
    cfg, out = config(tmp_path, [*STUDENT, f"student.model={model}"]), tmp_path / "out"
    path = Path(openrlhf.write_student(cfg, out, ROW))
    files = sorted(p.name for p in Path(model).iterdir())
    assert sorted(p.name for p in path.iterdir()) == files
    assert all((path / f).is_symlink() and (path / f).resolve() == (Path(model) / f).resolve() for f in files)


def test_a_template_that_drops_the_thinking_stops_before_the_job(smollm2_dir, tmp_path):
    drops = "{% for m in messages %}{{ m['content'].split('</think>')[-1] }}{% endfor %}"
    cfg = config(tmp_path, [*STUDENT, f"student.model={smollm2_dir}", f"student.chat_template={json.dumps(drops)}"])
    with pytest.raises(BardError, match="drops the thinking"):
        openrlhf.write_student(cfg, tmp_path / "out", ROW)
    assert not (tmp_path / "out" / "_parts").exists()
