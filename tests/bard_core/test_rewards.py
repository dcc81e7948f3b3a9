"""The BARD reward: R_bud shapes, the combination, scoring batches, and the TRL adapter called by TRL's own code."""

from collections import defaultdict

import pytest

from bard_core.budget import add_budget
from bard_core.config import BardConfig, BudgetConfig, RewardConfig
from bard_core.rewards import score_completions, trl_reward_func
from bard_core.scoring.reward import budget_reward, reward_label
from bard_core.tokenizers import cached_tokenizer, qwen3_tokenizers

CONFIG = BardConfig()


def completion(thinking_words: int, answer: str) -> str:
    return "<think>\n" + " ".join(["step"] * thinking_words) + "\n</think>\n\nThe answer is \\boxed{" + answer + "}."


# ---------------------------------------------------------------- R_bud


def test_cap_shape_is_flat_then_linear_to_zero():
    cfg = RewardConfig(shape="cap", tau=0.1, alpha=2.0)  # 1 up to 110, 0 at 100*(1.1+0.5) = 160
    assert budget_reward(50, 100, cfg) == 1.0
    assert budget_reward(110, 100, cfg) == 1.0
    assert budget_reward(135, 100, cfg) == pytest.approx(0.5)
    assert budget_reward(160, 100, cfg) == pytest.approx(0.0)
    assert budget_reward(400, 100, cfg) == 0.0
    assert budget_reward(10_000, None, cfg) == 1.0  # unbudgeted


def test_hard_shape_is_zero_past_the_budget():
    cfg = RewardConfig(shape="hard")
    assert budget_reward(100, 100, cfg) == 1.0
    assert budget_reward(101, 100, cfg) == 0.0


def test_target_shape_also_penalises_using_far_less():
    cfg = RewardConfig(shape="target", target_floor=0.5)
    assert budget_reward(10, 100, cfg) == pytest.approx(0.2)
    assert budget_reward(50, 100, cfg) == 1.0
    assert budget_reward(100, 100, cfg) == 1.0
    assert budget_reward(150, 100, cfg) == pytest.approx(0.5)


# ---------------------------------------------------------------- the combined reward


def score(config, texts, golds, budgets, **kw):
    return score_completions(texts, golds, budgets, config, "qwen3", **kw)


def test_reward_is_accuracy_times_budget_reward_with_every_component():
    texts = [completion(5, "42"), completion(5, "41"), completion(300, "42"), completion(300, "42")]
    parts = score(CONFIG, texts, ["42"] * 4, [100, 100, 200, None])
    right, wrong, over, unbudgeted = parts
    assert (right.reward, right.accuracy, right.budget_reward, right.over_budget) == (1.0, 1.0, 1.0, False)
    assert right.answer_pred == "42" and 5 <= right.length <= 10
    assert (wrong.reward, wrong.accuracy) == (0.0, 0.0)
    assert over.over_budget and 0.0 < over.budget_reward < 1.0
    assert over.reward == pytest.approx(over.budget_reward)
    assert (unbudgeted.reward, unbudgeted.over_budget) == (1.0, False)
    assert set(right.as_log()) >= {"accuracy", "budget_reward", "thinking_tokens", "over_budget"}


def test_over_budget_value_replaces_the_product_and_additive_is_a_sum():
    config = BardConfig(reward=RewardConfig(over_budget_value=-0.5))
    within, over_right, over_wrong = score(
        config, [completion(5, "7"), completion(300, "7"), completion(300, "8")], ["7"] * 3, [100, 100, 100]
    )
    assert (within.reward, over_right.reward, over_wrong.reward) == (1.0, -0.5, -0.5)
    additive = BardConfig(reward=RewardConfig(combine="additive"))
    wrong_within, right_over = score(additive, [completion(5, "8"), completion(300, "7")], ["7", "7"], [100, 100])
    assert wrong_within.reward == 1.0  # 0 + 1
    assert right_over.reward == pytest.approx(1.0 + right_over.budget_reward)


def test_unparseable_gold_is_skipped_not_zero():
    (parts,) = score(BardConfig(reward=RewardConfig(over_budget_value=-0.5)), [completion(300, "5")], [""], [10])
    assert parts.reward is None and parts.accuracy is None
    assert parts.as_log()["unscorable"] == 1.0


def test_truncated_thinking_scores_zero_and_counts_every_token():
    (parts,) = score(CONFIG, ["<think>\n" + "step " * 50 + "\\boxed{42}"], ["42"], [1000])
    assert parts.truncated and parts.reward == 0.0 and parts.length >= 50


def test_completion_count_mode_counts_the_answer_too():
    whole = BardConfig(budget=BudgetConfig(count="completion"))
    text = completion(5, "42")
    (thinking,) = score(CONFIG, [text], ["42"], [100])
    (full,) = score(whole, [text], ["42"], [100])
    assert full.length > thinking.length + 8


def test_reward_label_is_json_with_answer_and_budget():
    import json

    assert json.loads(reward_label("\\frac{1}{2}", 512)) == {"answer": "\\frac{1}{2}", "budget": 512}
    assert json.loads(reward_label("B", None, ["x", "y"]))["choices"] == ["x", "y"]


# ---------------------------------------------------------------- TRL


@pytest.fixture(scope="module")
def qwen_fast():
    """A transformers fast tokenizer with the real Qwen3 vocabulary, as TRL's processing_class would be."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=qwen3_tokenizers(), eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )


class TrlTrainerStandIn:
    """Just enough state for TRL's own `GRPOTrainer._calculate_rewards` to run our reward function."""

    def __init__(self, reward_func):
        from accelerate import Accelerator
        from transformers import TrainerState
        from trl import GRPOTrainer

        self.accelerator = Accelerator(cpu=True)
        self.state = TrainerState()
        self.args = type("Args", (), {"report_to": []})()
        self.reward_funcs = [reward_func]
        self.reward_processing_classes = [None]
        self.reward_func_names = [reward_func.__name__]
        self.environments = None
        self._pending_metrics = defaultdict(list)
        self._pending_extra_logs = defaultdict(list)
        self.calculate_rewards = GRPOTrainer._calculate_rewards.__get__(self)
        self._log_metric = GRPOTrainer._log_metric.__get__(self)
        self._log_completion_extra = GRPOTrainer._log_completion_extra.__get__(self)


def test_trl_reward_func_runs_inside_trls_reward_calculation(qwen_fast):
    qwen = cached_tokenizer("qwen3")
    reward = trl_reward_func(CONFIG, qwen_fast)
    assert reward.__name__ == "bard_reward"
    budgets = [100, 100, 20, None]
    texts = [completion(5, "42"), completion(5, "41"), completion(60, "42"), completion(60, "42")]
    ids = [qwen.encode_batch([t])[0] + [qwen_fast.eos_token_id] for t in texts]
    prompts = [add_budget("What is 6*7?", b, CONFIG.budget) for b in budgets]
    inputs = [
        {"prompt": p, "answer": "42", "budget": b, "uid": f"u{i}"}
        for i, (p, b) in enumerate(zip(prompts, budgets, strict=True))
    ]
    decoded = qwen_fast.batch_decode(ids, skip_special_tokens=True)  # what TRL hands over as `completions`
    trainer = TrlTrainerStandIn(reward)
    rewards = trainer.calculate_rewards(inputs, prompts, decoded, ids)
    assert rewards.shape == (4, 1)
    expected = [p.reward for p in score_completions(texts, ["42"] * 4, budgets, CONFIG, qwen)]
    assert rewards[:, 0].tolist() == pytest.approx(expected)
    assert expected[0] == 1.0 and expected[1] == 0.0 and 0.0 <= expected[2] < 1.0 and expected[3] == 1.0
    assert trainer._pending_metrics["bard/accuracy"] == [pytest.approx(0.75)]
    assert trainer._pending_extra_logs["budget_tokens"] == [
        p.length for p in score_completions(texts, ["42"] * 4, budgets, CONFIG, qwen)
    ]


def test_trl_reward_func_reads_budgets_from_prompts_and_handles_chat_completions(qwen_fast):
    reward = trl_reward_func(CONFIG, qwen_fast)
    prompts = [[{"role": "user", "content": add_budget("What is 6*7?", 20, CONFIG.budget)}]] * 2
    completions = [
        [{"role": "assistant", "content": completion(5, "42")}],
        [{"role": "assistant", "content": completion(80, "42")}],
    ]
    out = reward(prompts=prompts, completions=completions, answer=["42", "42"])  # no budget column, no ids
    assert out[0] == 1.0 and out[1] < 1.0
    assert reward(prompts=prompts[:1], completions=completions[:1], answer=[""]) == [None]


def test_trl_reward_func_counts_ids_when_the_think_tags_are_special_tokens(tmp_path):
    """A tokenizer marking <think> special: TRL's decoded text loses the tags, the ids keep them."""
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["[UNK]", "[EOS]", "step", "The", "answer", "is", "\\boxed{", "42", "41", "}"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.add_special_tokens([AddedToken("<think>", special=True), AddedToken("</think>", special=True)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="[EOS]")
    text = "<think> " + "step " * 12 + "</think> The answer is \\boxed{ 42 }"
    ids = fast(text, add_special_tokens=False)["input_ids"] + [fast.eos_token_id]
    assert "<think>" not in fast.decode(ids, skip_special_tokens=True)
    reward = trl_reward_func(BardConfig(), fast)
    prompts = [add_budget("Q", 12, CONFIG.budget), add_budget("Q", 11, CONFIG.budget)]
    out = reward(
        prompts=prompts,
        completions=[fast.decode(ids, skip_special_tokens=True)] * 2,
        completion_ids=[ids, ids],
        answer=["42", "42"],
        budget=[12, 11],
    )
    assert out[0] == 1.0  # 12 thinking tokens within 12
    assert out[1] == pytest.approx(1 - 1 / 11)  # one over a budget of 11: cap shape, alpha 1
