"""Budget-aware inference on a real tiny model: the hard cap, batching with different budgets, the budget text as
trained, where the template comes from, and bad requests. The tiny model's weights are random, so it closes its
thinking on its own only now and then: the cap is what ends most thinking here."""

import shutil

import pytest

from bard_core.budget import add_budget, count_budget_tokens
from bard_core.config import BudgetConfig
from bard_core.inference import BudgetCap, BudgetedModel, InferenceError, Request, _Limits, _Sequence, _Tags, vllm_request
from bard_core.prompts import chat
from storage.artifacts import ArtifactStore

TEMPLATE = "Think for at most {budget} tokens."
QUESTIONS = ["one plus two", "what is three times four", "add five and six then check"]


@pytest.fixture(scope="module")
def model(tiny_model) -> BudgetedModel:
    return BudgetedModel.load(tiny_model, template=TEMPLATE, batch_size=16)


def _recount(result, tokenizer) -> int:
    """The thinking tokens as bard counts them everywhere else: the completion's text, re-encoded."""
    completion = f"<think>{result.thinking}</think>{result.answer}"
    return count_budget_tokens([completion], tokenizer, BudgetConfig())[0]


def test_the_hard_cap_is_never_exceeded(model):
    budgets = [1, 2, 3, 5, 8, 13, 21, 40]
    requests = [
        Request(q, budget=b, mode=mode, answer_tokens=4, temperature=1.0, seed=seed)
        for q in QUESTIONS for b in budgets for mode in ("hard", "soft+hard") for seed in (0, 1)
    ]  # fmt: skip
    results = model.generate(requests)
    assert len(results) == len(requests)
    for req, res in zip(requests, results):
        assert res.thinking_tokens <= req.budget, (req, res)
        assert _recount(res, model.tokenizer) <= req.budget, (req, res)
        assert res.capped == (res.thinking_tokens == req.budget)
    # The cap did the work: most rows of small budgets were cut, and some large ones spent more than a small budget.
    assert sum(r.capped for r in results) > len(results) // 2
    assert max(r.thinking_tokens for q, r in zip(requests, results) if q.budget == 40) > 13


def test_one_batch_honours_each_rows_own_budget(model):
    budgets = [1, 4, 30, 2, 60, 7]
    results = model.generate([Request(QUESTIONS[0], budget=b, mode="hard", temperature=1.0, seed=3) for b in budgets])
    for b, res in zip(budgets, results):
        assert res.thinking_tokens <= b
    # Not one cap for the whole batch: the rows with room spent more than the smallest budgets allow.
    spent = {b: r.thinking_tokens for b, r in zip(budgets, results)}
    assert spent[1] == 1 and spent[2] <= 2 and max(spent[30], spent[60]) > 7


def test_the_closing_tag_is_forced_exactly_when_the_budget_is_spent(model):
    """BudgetCap on real tensors: the opening tag first, the thinking free until `budget` tokens, then only the
    closing tag; EOS becomes the closing tag while thinking; the tags masked in the answer; EOS at answer_tokens."""
    import torch

    tags = _Tags(open_id=10, close_id=11, eos_ids=frozenset({3}), eos_id=3)
    seq = _Sequence(tags, _Limits(budget=2, answer_tokens=2, max_tokens=50))
    cap = BudgetCap([seq], prompt_width=1)
    ids = [0]

    def step(token=None):
        if token is not None:
            ids.append(token)
        scores = torch.zeros(1, 20)
        return cap(torch.tensor([ids]), scores)[0]

    def only(scores) -> int | None:
        allowed = torch.isfinite(scores).nonzero().flatten().tolist()
        return allowed[0] if len(allowed) == 1 else None

    assert only(step()) == 10  # the opening tag
    free = step(10)
    assert only(free) is None and free[3] == float("-inf") and free[11] > 0  # EOS's mass moved to the closing tag
    assert only(step(5)) is None  # one thinking token spent
    assert only(step(6)) == 11  # two: the budget is spent, the closing tag is forced
    answer = step(11)
    assert answer[10] == answer[11] == float("-inf") and answer[3] == 0  # answering: no tags, EOS allowed
    assert only(step(7)) is None
    assert only(step(8)) == 3  # two answer tokens: EOS
    assert (seq.thinking, seq.answer, seq.capped) == (2, 2, True)


def test_answers_are_limited_to_answer_tokens(model):
    requests = [Request(q, budget=3, mode="hard", answer_tokens=k, temperature=1.0, seed=k) for q in QUESTIONS for k in (1, 2, 5)]
    for req, res in zip(requests, model.generate(requests)):
        assert res.answer_tokens <= req.answer_tokens
        assert len(model.tokenizer(res.answer, add_special_tokens=False)["input_ids"]) <= req.answer_tokens
        if res.answer_tokens == req.answer_tokens:
            assert res.finish_reason == "length"


def test_streamed_deltas_join_to_the_results_text(model):
    seen: dict[tuple[int, str], str] = {}

    def on_delta(index, kind, text):
        seen[index, kind] = seen.get((index, kind), "") + text

    requests = [Request(q, budget=b, mode="soft+hard", seed=b) for q in QUESTIONS for b in (3, 20)]
    results = model.generate(requests, on_delta=on_delta)
    for i, res in enumerate(results):
        assert seen.get((i, "thinking"), "") == res.thinking
        assert seen.get((i, "answer"), "") == res.answer


def test_soft_mode_writes_the_budget_text_as_in_training(model):
    """The prompt is the chat template over chat(add_budget(question, budget)): the user turn assemble writes."""
    prepared = model.prepare(Request("one plus two", budget=17, mode="soft"))
    assert prepared.messages == [{"role": "user", "content": "one plus two\nThink for at most 17 tokens."}]
    trained = model.tokenizer.apply_chat_template(
        chat(add_budget("one plus two", 17, BudgetConfig(template=TEMPLATE))), tokenize=False, add_generation_prompt=True
    )
    assert prepared.prompt_ids == model.tokenizer(trained, add_special_tokens=False)["input_ids"]
    assert prepared.limits.budget is None  # soft: asked, not enforced
    hard = model.prepare(Request("one plus two", budget=17, mode="hard"))
    assert hard.messages == [{"role": "user", "content": "one plus two"}]  # hard alone: no budget text, only the cap
    assert hard.limits.budget == 17


def _artifact_model(home, tiny_model, stage: str, record: dict, inputs: dict) -> str:
    store = ArtifactStore(str(home))
    path = store.begin(stage, f"{stage}-key", record, inputs)
    shutil.copytree(tiny_model, path / "model")
    return str(path / "model")


def test_the_template_is_read_from_the_artifact(tmp_path, tiny_model):
    budget = {"template": "Budget: {budget} tokens.", "separator": " ", "think_open": "<think>", "think_close": "</think>"}
    store = ArtifactStore(str(tmp_path))
    store.begin("assemble", "assemble-key", {"assemble": {}, "budget": budget}, {"compress": "c"})
    sft_dir = _artifact_model(tmp_path, tiny_model, "sft", {"student": {}, "sft": {}}, {"assemble": "assemble-key"})
    sft = BudgetedModel.load(sft_dir)
    assert (sft.budget_cfg.template, sft.budget_cfg.separator) == ("Budget: {budget} tokens.", " ")
    assert sft.prepare(Request("one plus two", budget=9)).messages[-1]["content"] == "one plus two Budget: 9 tokens."

    grpo_dir = _artifact_model(tmp_path, tiny_model, "grpo", {"grpo": {}, "budget": {**budget, "template": "B={budget}"}},
                               {"sft": "sft-key"})  # fmt: skip
    assert BudgetedModel.load(grpo_dir).budget_cfg.template == "B={budget}"
    # An explicit template wins over the artifact's.
    assert BudgetedModel.load(grpo_dir, template="At most {budget}.").budget_cfg.template == "At most {budget}."


def test_a_directory_bard_did_not_make_needs_a_template(tiny_model):
    plain = BudgetedModel.load(tiny_model)
    with pytest.raises(InferenceError, match="no budget template known.*--budget-template"):
        plain.prepare(Request("one plus two", budget=10, mode="soft"))
    assert plain.generate([Request("one plus two", budget=2, mode="hard")])[0].thinking_tokens <= 2
    assert plain.prepare(Request("one plus two")).limits.budget is None  # unbudgeted: no template needed
    with pytest.raises(InferenceError, match="must contain \\{budget\\}"):
        BudgetedModel.load(tiny_model, template="Think briefly.")


@pytest.mark.parametrize(
    "request_, message",
    [
        (Request("q", budget=0), "at least 1 token"),
        (Request("q", budget=-5, mode="hard"), "at least 1 token"),
        (Request("q", budget=2.5), "whole number"),
        (Request("q", budget=True), "whole number"),
        (Request("q", budget=10**9), "context length"),
        (Request("q", mode="hard"), "needs a thinking budget"),
        (Request("q", budget=5, mode="firm"), "expected one of soft, hard, soft\\+hard"),
        (Request("one " * 1100, budget=5), "over the model's context length"),
        (Request("q", budget=1000, mode="hard"), "over the model's context length"),
        (Request([{"role": "system", "content": "s"}], budget=5), "no user turn"),
    ],
)
def test_bad_requests_get_one_clear_error(model, request_, message):
    with pytest.raises(InferenceError, match=message):
        model.prepare(request_)


def test_an_unknown_model_directory_is_refused(tmp_path):
    with pytest.raises(InferenceError, match="not a model directory"):
        BudgetedModel.load(tmp_path / "nowhere")


def test_the_vllm_request_carries_the_budget_text_and_vllms_cap():
    cfg = BudgetConfig(template=TEMPLATE)
    both = vllm_request(Request("What is 2+3?", budget=256, mode="soft+hard", answer_tokens=32, seed=5), "student", cfg)
    assert both == {
        "model": "student",
        "messages": [{"role": "user", "content": "What is 2+3?\nThink for at most 256 tokens."}],
        "temperature": 0.6, "top_p": 0.95, "seed": 5,
        "max_tokens": 256 + 2 + 32,  # the tags, the budget, the answer: vLLM counts them all in max_tokens
        "thinking_token_budget": 256,
    }  # fmt: skip
    soft = vllm_request(Request("What is 2+3?", budget=256), "student", cfg)
    assert "thinking_token_budget" not in soft and soft["messages"] == both["messages"]
    hard = vllm_request(Request("What is 2+3?", budget=256, mode="hard"), "student", None)  # no template needed
    assert hard["messages"] == [{"role": "user", "content": "What is 2+3?"}] and hard["thinking_token_budget"] == 256
    with pytest.raises(InferenceError, match="at least 1 token"):
        vllm_request(Request("q", budget=0, mode="hard"), "student", cfg)
    with pytest.raises(InferenceError, match="no budget template known"):
        vllm_request(Request("q", budget=8), "student", None)
