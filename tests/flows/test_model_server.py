"""The OpenAI-compatible server (`bard serve-model`), started as a user starts it, over real HTTP with the `openai`
client, on a tiny model trained here to follow the budget in its prompt (tests/bard_core/budget_student.py)."""

import os
import subprocess
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from bard_core.config import BudgetConfig
from bard_core.metrics import spearman
from tests.bard_core.budget_student import QUESTION, TEMPLATE, TRAINED_BUDGETS, train_budget_student
from tests.conftest import BARD, free_port

NAME = "tiny"


@pytest.fixture(scope="module")
def student(tmp_path_factory) -> str:
    return str(train_budget_student(tmp_path_factory.mktemp("budget-student")))


@pytest.fixture(scope="module")
def server(student, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("serve-model") / "server.log"
    cmd = [BARD, "serve-model", student, "--port", str(port), "--name", NAME, "--budget-template", TEMPLATE,
           "--device", "cpu", "--batch-size", "8"]  # fmt: skip
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, log.read_text()
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            break
        except OSError:
            assert time.monotonic() < deadline, "the server did not answer /health in 120 s"
            time.sleep(0.3)
    yield openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=120)
    proc.terminate()
    proc.wait(timeout=30)


def ask(client, budget=None, mode="soft", seed=0, question=QUESTION, temperature=1.0, **options):
    body = {"budget_mode": mode, "answer_tokens": 4, **({"thinking_budget": budget} if budget is not None else {})}
    return client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": question}], seed=seed,
                                          temperature=temperature, extra_body=body, **options)  # fmt: skip


def spent(reply) -> int:
    return reply.usage.completion_tokens_details.reasoning_tokens


def test_models_lists_the_served_model(server):
    assert [m.id for m in server.models.list().data] == [NAME]


def test_soft_mode_lengths_follow_the_budgets(server):
    budgets = [b for b in TRAINED_BUDGETS for _ in range(2)] + [6, 10, 20]
    replies = [ask(server, b, "soft", seed=i) for i, b in enumerate(budgets)]
    assert spearman(budgets, [spent(r) for r in replies]) > 0.9
    assert all(spent(r) == b for b, r in zip(budgets, replies) if b in TRAINED_BUDGETS)  # as trained
    assert not any(r.model_extra["bard"]["capped"] for r in replies)  # soft: asked, never forced


def test_hard_mode_never_exceeds_the_budget(server, student):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(student)
    for budget in (1, 2, 3, 5, 8, 13):
        for mode in ("hard", "soft+hard"):
            reply = ask(server, budget, mode, seed=budget)
            spent = reply.usage.completion_tokens_details.reasoning_tokens
            thinking = reply.choices[0].message.model_extra["reasoning_content"]
            assert spent <= budget
            assert len(tokenizer(thinking, add_special_tokens=False)["input_ids"]) <= budget
            assert reply.model_extra["bard"]["capped"] == (spent == budget)


def test_streaming_delivers_the_same_text(server):
    for budget, mode in ((6, "soft+hard"), (40, "soft")):
        whole = ask(server, budget, mode, seed=7)
        stream = ask(server, budget, mode, seed=7, stream=True, stream_options={"include_usage": True})
        thinking, answer, usage, finish = "", "", None, None
        for chunk in stream:
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                thinking += (choice.delta.model_extra or {}).get("reasoning_content") or ""
                answer += choice.delta.content or ""
                finish = choice.finish_reason or finish
        message = whole.choices[0].message
        assert (thinking, answer) == (message.model_extra["reasoning_content"], message.content)
        assert finish == whole.choices[0].finish_reason
        assert usage.completion_tokens_details.reasoning_tokens == whole.usage.completion_tokens_details.reasoning_tokens


def test_concurrent_requests_each_get_their_own_budget(server):
    budgets = [24, 2, 16, 4, 12, 8, 3, 20]
    with ThreadPoolExecutor(len(budgets)) as pool:
        replies = list(pool.map(lambda b: ask(server, b, "soft+hard", seed=b, temperature=0), budgets))
    for budget, reply in zip(budgets, replies):
        assert reply.model_extra["bard"]["thinking_budget"] == budget
        assert spent(reply) <= budget
        if budget in TRAINED_BUDGETS:
            assert spent(reply) == budget  # its own budget, neither a neighbour's nor the batch's


def test_soft_mode_puts_the_budget_text_in_the_prompt(server, student):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(student)
    cfg = BudgetConfig(template=TEMPLATE)
    added = len(tokenizer(cfg.separator + TEMPLATE.format(budget=12), add_special_tokens=False)["input_ids"])
    plain = ask(server, None, "soft")
    soft = ask(server, 12, "soft")
    hard = ask(server, 12, "hard")
    assert soft.usage.prompt_tokens == plain.usage.prompt_tokens + added
    assert hard.usage.prompt_tokens == plain.usage.prompt_tokens  # hard alone: the cap, no text


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"thinking_budget": 0}, "thinking_budget"),
        ({"thinking_budget": -3}, "thinking_budget"),
        ({"thinking_budget": 2.5}, "thinking_budget"),
        ({"thinking_budget": "ten"}, "thinking_budget"),
        ({"thinking_budget": 10**9}, "context length"),
        ({"budget_mode": "hard"}, "needs a thinking budget"),
        ({"budget_mode": "firm", "thinking_budget": 5}, "budget_mode"),
        ({"thinking_budget": 200, "budget_mode": "hard"}, "over the model's context length"),
        ({"n": 2}, "n"),
    ],
)
def test_bad_requests_get_400_and_the_server_keeps_serving(server, extra, message):
    with pytest.raises(openai.BadRequestError) as caught:
        server.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "q"}], extra_body=extra)
    assert caught.value.status_code == 400
    assert message in caught.value.body["message"]
    assert spent(ask(server, 2, "hard")) <= 2


def test_an_unknown_model_and_an_overlong_prompt_get_400(server):
    with pytest.raises(openai.BadRequestError, match="unknown; this server serves 'tiny'"):
        server.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "q"}])
    with pytest.raises(openai.BadRequestError, match="over the model's context length"):
        ask(server, 5, question="what " * 300)
