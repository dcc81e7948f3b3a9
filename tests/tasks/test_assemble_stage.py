"""Stage `assemble` on real Parquet artifacts: the mix ratio, the contrastive grouping, dedup,
decontamination with planted contaminated rows, split leakage, byte-for-byte reproducibility, and the
outputs loaded by `datasets`, as TRL conversational data and as OpenRLHF reward labels."""

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from bard_core.config import load_config
from bard_core.reward_file import write_reward_file
from storage.query import run_query
from tasks import graph
from tests.conftest import DATA
from tests.tasks.synthetic_upstream import write_upstream

AIME = [json.loads(line)["prompt"].split("\nPlease reason")[0] for line in (DATA / "aime24.jsonl").open()]


def write_problems(path: Path) -> Path:
    rows = [{"id": f"q{i:03d}", "question": f"Tom has {i} apples and buys {i + 7} more at the market. How many apples "
             f"does Tom have now?", "answer": str(2 * i + 7)} for i in range(60)]  # fmt: skip
    rows.append({"id": "zdup-exact", "question": "TOM has 3 apples, and buys 10 more at the market!  How many apples "
                 "does Tom have now", "answer": "13"})  # fmt: skip
    near = "A farmer plants 12 rows of 9 trees and then 4 more trees along the fence by the barn near the river bank"
    rows.append({"id": "near-a", "question": near + " today. How many trees?", "answer": "112"})
    rows.append({"id": "near-b", "question": near + " today. How many trees are there?", "answer": "112"})
    rows.append({"id": "planted-1", "question": AIME[0], "answer": "204"})  # copied from AIME 2024
    rows.append({"id": "planted-2", "question": "Hint: " + AIME[5][:-1] + ", please.", "answer": "1"})
    rows.append({"id": "bad-gold", "question": "Which is bigger, the apple or the tree?", "answer": "E",
                 "choices": ["the apple", "the tree"]})  # the gold is no choice: it cannot be graded
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory, ray_local):
    tmp = tmp_path_factory.mktemp("assemble")
    source = write_problems(tmp / "train.jsonl")
    sets = [
        f'problems.sources=[{{"kind":"jsonl","path":"{source}","fields":{{"uid":"id"}},"source":"toy"}},'
        f'{{"kind":"aime","path":"{DATA}/aime24.jsonl","split":"test"}}]',
        "budget_sampling.mode=uniform", "budget_sampling.min_budget=10", "budget_sampling.max_budget=200",
        "assemble.standard_fraction=0.3", "assemble.standard_per_problem=2", "assemble.validation_fraction=0.2", "assemble.rl_budgets_per_problem=2",
    ]  # fmt: skip
    configs = [load_config(None, sets, home=str(tmp / name)) for name in ("a", "b")]
    manifests = []
    for config in configs:
        graph.build("problems", config)
        write_upstream(config, samples=3, budgets=3, words=80)
        manifests.append(graph.build("assemble", config))
    return configs[0], manifests


def table(manifest, name):
    return pq.read_table(manifest.files(name)[0])


def test_dedup_and_decontamination_report(built):
    config, (manifest, _) = built
    dropped = {r["problem_uid"]: r for r in table(manifest, "assemble_dropped").to_pylist()}
    assert dropped["toy/zdup-exact"]["reason"] == "duplicate" and dropped["toy/zdup-exact"]["detail"] == "toy/q003"
    assert dropped["toy/near-b"]["reason"] == "near_duplicate" and dropped["toy/near-b"]["detail"] == "toy/near-a"
    assert {u for u, r in dropped.items() if r["reason"] == "contaminated"} == {"toy/planted-1", "toy/planted-2"}
    assert all(r["detail"] == "aime24" for r in dropped.values() if r["reason"] == "contaminated")
    assert dropped["toy/bad-gold"]["reason"] == "unscorable_gold"
    assert manifest.stats["decontamination"] == [{"benchmark": "aime24", "eval_questions": 30, "removed": 2}]
    sft = table(manifest, "sft_dataset")
    assert not set(sft.column("problem_uid").to_pylist()) & set(dropped) - {"toy/bad-gold"}
    assert not any(u.startswith("aime24/") for u in sft.column("problem_uid").to_pylist()), "eval sets never trained on"


def test_mix_ratio_grouping_and_splits(built):
    config, (manifest, _) = built
    rows = table(manifest, "sft_dataset").to_pylist()
    mix = manifest.stats["mix"]
    assert mix["budget"] == mix["budget_available"] and mix["standard"] < mix["standard_available"]
    assert abs(mix["standard_fraction"] - 0.3) < 0.03
    kinds = {r["kind"] for r in rows}
    assert kinds == {"budget", "standard"}
    for r in rows:
        user, assistant = r["prompt"][0]["content"], r["completion"][0]["content"]
        assert r["prompt"][0]["role"] == "user" and r["completion"][0]["role"] == "assistant"
        assert assistant.startswith("<think>") and "</think>" in assistant
        if r["kind"] == "budget":
            assert user.endswith(f"\nThink for at most {r['budget']} tokens.") and r["thinking_tokens"] <= r["budget"]
        else:
            assert "Think for at most" not in user and r["budget"] is None
    # A problem's rows are contiguous (its budgets side by side) and in one split only.
    order = [r["problem_uid"] for r in rows]
    runs = [u for i, u in enumerate(order) if i == 0 or order[i - 1] != u]
    assert len(runs) == len(set(order))
    splits = {}
    for r in rows:
        splits.setdefault(r["problem_uid"], set()).add(r["split"])
    assert all(len(s) == 1 for s in splits.values())
    assert {next(iter(s)) for s in splits.values()} == {"train", "validation"}
    multi = [u for u in set(order) if sum(1 for r in rows if r["problem_uid"] == u and r["kind"] == "budget") >= 2]
    assert multi, "the same question at several budgets"
    rl = table(manifest, "rl_prompts").to_pylist()
    rl_splits = {r["problem_uid"]: r["split"] for r in rl}
    assert all(rl_splits.get(u, s) == next(iter(splits[u])) for u, s in rl_splits.items() if u in splits)


def test_reproducible_byte_for_byte(built):
    _, (a, b) = built
    assert a.key == b.key and a.content_hash == b.content_hash


def test_outputs_load_in_datasets_trl_and_openrlhf(built, tiny_model, tmp_path):
    import datasets
    from transformers import AutoTokenizer
    from trl.data_utils import is_conversational, maybe_apply_chat_template

    config, (manifest, _) = built
    sft = datasets.load_dataset("parquet", data_files=manifest.files("sft_dataset"), split="train")
    assert is_conversational(sft[0])
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    rendered = maybe_apply_chat_template(sft[0], tokenizer)
    assert rendered["completion"].startswith("<think>") and "<|im_start|>user" in rendered["prompt"]
    # OpenRLHF's SFT dataset (--input_key prompt --output_key completion --apply_chat_template) does this:
    prompt = tokenizer.apply_chat_template(sft[0]["prompt"], tokenize=False, add_generation_prompt=True)
    response = tokenizer.apply_chat_template(sft[0]["prompt"] + sft[0]["completion"], tokenize=False)[len(prompt):]
    assert response.startswith("<think>") and sft[0]["prompt"][0]["content"] in prompt

    rl = datasets.load_dataset("parquet", data_files=manifest.files("rl_prompts"), split="train")
    assert set(rl.column_names) >= {"prompt", "answer", "budget", "label"} and is_conversational(rl[0])
    reward_path = write_reward_file(config.model_copy(update={"budget": config.budget.model_copy(
        update={"tokenizer": f"{tiny_model}/tokenizer.json"})}), tmp_path / "reward_func.py")  # fmt: skip
    import importlib.util

    spec = importlib.util.spec_from_file_location("reward_func", reward_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    row = rl[0]
    prompt = f"<|im_start|>user\n{row['prompt'][0]['content']}<|im_end|>\n<|im_start|>assistant\n"
    out = module.reward_func([prompt + f"<think>one</think>\\boxed{{{row['answer']}}}"], [prompt], [row["label"]])
    assert out["rewards"] == 1.0 and json.loads(row["label"])["budget"] == row["budget"]
    assert run_query(config.home, "select count(*) from rl_prompts").column(0)[0].as_py() == len(rl)
    assert run_query(config.home, "select sum(rows) from assemble_stats").column(0)[0].as_py() == len(sft)


def test_rl_prompts_take_the_held_out_budgets_only_when_asked(built, tmp_path):
    config, _ = built
    held_out = list(range(10, 150))  # most of [10, 200]: a draw lands in it nearly always when allowed
    budgets = {}
    for include in (False, True):
        variant = config.model_copy(update={
            "home": str(tmp_path / str(include)),
            "budget_sampling": config.budget_sampling.model_copy(update={"holdout": held_out}),
            "assemble": config.assemble.model_copy(update={"rl_includes_holdout": include}),
        })  # fmt: skip
        graph.build("problems", variant)
        write_upstream(variant, samples=3, budgets=3, words=80)
        budgets[include] = {r["budget"] for r in table(graph.build("assemble", variant), "rl_prompts").to_pylist()}
    assert budgets[False] and not budgets[False] & set(held_out)
    assert budgets[True] & set(held_out)


def test_rl_budgets_in_mode_flat_are_weighted_by_the_chains_compression_takes(built, tmp_path):
    """The RL prompts' flat reweighting reads the chains compression takes (`compress.min_thinking_tokens`
    included), not a rule of its own: before, assemble counted every correct, complete chain."""
    from bard_core.budget import length_coverage, sample_budgets
    from bard_core.compress import coverage

    config, _ = built
    variant = config.model_copy(update={
        "home": str(tmp_path / "flat"),
        "budget_sampling": config.budget_sampling.model_copy(update={"mode": "flat", "min_budget": 4, "max_budget": 200, "flat_bins": 6, "holdout": []}),
        "compress": config.compress.model_copy(update={"min_thinking_tokens": 85}),
        "assemble": config.assemble.model_copy(update={"rl_budgets_per_problem": 3}),
    })  # fmt: skip
    graph.build("problems", variant)
    teacher_made, _ = write_upstream(variant, samples=3, budgets=3, words=80)
    rl = table(graph.build("assemble", variant), "rl_prompts").to_pylist()
    chains = [r for f in teacher_made.files("teacher_samples") for r in pq.read_table(f).to_pylist()]
    taken = coverage(teacher_made.files("teacher_samples"), variant)
    every_correct = length_coverage([r["thinking_tokens"] for r in chains if r["correct"] and not r["truncated"]],
                                    variant.budget_sampling)  # fmt: skip
    assert taken != every_correct  # the two rules differ on these chains

    def drawn(weights):
        return {(p, b) for p in {r["problem_uid"] for r in rl}
                for b in sample_budgets(variant.budget_sampling, p, count=3, coverage=weights)}

    assert {(r["problem_uid"], r["budget"]) for r in rl} == drawn(taken) != drawn(every_correct)


def test_no_accepted_compression_stops_assemble_saying_why(built, tmp_path):
    """Too little input: with every compression rejected, SFT would learn no budget. The stage stops with an
    error that says so and what to change, and writes no artifact."""
    from bard_core.errors import BardError

    config, _ = built
    variant = config.model_copy(update={"home": str(tmp_path / "none-accepted")})
    graph.build("problems", variant)
    write_upstream(variant, samples=3, budgets=1, words=80)  # one budget per chain, over it: rejected
    with pytest.raises(BardError, match="no accepted compression.*compress_stats.*above_length"):
        graph.build("assemble", variant)
    assert graph.Plan(variant).step("assemble").manifest() is None
