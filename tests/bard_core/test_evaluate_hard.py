"""The eval stage's `mode: hard`: the same problems and budgets as `mode: budget`, on a model trained here to
follow its budget text, with the thinking capped at the budget. At a budget it never saw (3) the trained model
thinks past it in budget mode; in hard mode no sample does."""

import pytest

from bard_core import evaluate
from bard_core.config import ConfigError, load_config
from bard_core.config.generation import HFBackendConfig
from bard_core.generation.hf_backend import HFBackend
from tests.bard_core.budget_student import QUESTION, train_budget_student


@pytest.fixture(scope="module")
def student(tmp_path_factory) -> str:
    return str(train_budget_student(tmp_path_factory.mktemp("budget-student")))


def test_hard_mode_caps_every_sample_where_budget_mode_does_not(student):
    config = load_config(None, [
        f"budget.tokenizer={student}/tokenizer.json", "eval.budgets=[3, 8, 12]", "eval.samples=2",
        "budget.tokenizer_mismatch_reason=the demo's student and compressor are not used here",
        "eval.temperature=0", "eval.answer_tokens=4",
        f"eval.models=[{{name: soft, model: {student}}}, {{name: capped, model: {student}, mode: hard}}]",
    ])  # fmt: skip
    problems = [{"uid": f"p{i}", "source": "t", "question": QUESTION, "answer": "done", "choices": None, "split": "test",
                 "meta": None} for i in range(2)]  # fmt: skip
    backend = HFBackend(HFBackendConfig(backend="hf", model=student, device="cpu"))
    soft, hard = (evaluate.sample(problems, backend, config, m, student) for m in config.eval.models)
    assert len(hard) == len(soft) == 2 * 3 * 2
    assert {r["mode"] for r in hard} == {"hard"}
    assert all(r["thinking_tokens"] <= r["budget"] for r in hard)  # counted as the stage counts: the text, re-encoded
    assert any(r["thinking_tokens"] > r["budget"] for r in soft if r["budget"] == 3)
    # At the trained budgets the cap changes nothing: the model closes its thinking on time either way.
    assert [r["thinking_tokens"] for r in hard if r["budget"] != 3] == [r["thinking_tokens"] for r in soft if r["budget"] != 3]


def test_hard_mode_needs_the_hf_engine():
    with pytest.raises(ConfigError, match="mode hard runs its cap in the hf engine, not vllm"):
        load_config(None, ["eval.generation={backend: vllm}", "eval.models=[{name: s, model: sft, mode: hard}]"])
