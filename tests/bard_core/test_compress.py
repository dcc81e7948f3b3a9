"""Compression acceptance (fits the budget, keeps the answer, format intact), retries with a tighter target,
budget draws below the chain's own length, and the prompt. The compressor LLM is an external model: here a
deterministic stand-in that rewrites to a chosen number of words, so every branch is reached on purpose."""

import re

import duckdb

from bard_core.compress import compress, eligible, jobs_for, request
from bard_core.config import BardConfig, BudgetConfig, BudgetSamplingConfig, CompressConfig
from bard_core.generation import Completion, HFBackendConfig
from bard_core.tokenizers import cached_tokenizer

GEN = HFBackendConfig(backend="hf", model="unused")
PROBLEM = {"uid": "p1", "question": "What is 3 + 4 + 5?", "answer": "12", "choices": None}


def config(**compress) -> BardConfig:
    return BardConfig(
        compress=CompressConfig(generation=GEN, **compress),
        budget_sampling=BudgetSamplingConfig(mode="tiers", tiers=[20, 40, 80], per_chain=3),
    )


def chain(uid="p1/s0", tokens=100, correct=True, truncated=False) -> dict:
    thinking = " ".join(["step"] * tokens)
    return {"uid": uid, "problem_uid": "p1", "source": "toy", "thinking": thinking, "thinking_tokens": tokens,
            "correct": correct, "truncated": truncated}  # fmt: skip


class StandInCompressor:
    """Answers each request by `reply(target, attempt)` -> (words of thinking, answer, closed?)."""

    def __init__(self, reply):
        self.reply, self.calls = reply, []

    def generate(self, requests):
        out = []
        for r in requests:
            target = int(re.search(r"at most (\d+) tokens", r.messages[-1]["content"]).group(1))
            self.calls.append((r.uid, target))
            words, answer, closed = self.reply(target, sum(1 for uid, _ in self.calls if uid == r.uid))
            text = "<think>\n" + " ".join(["go"] * words) + ("\n</think>\n\n" if closed else "") + f"\\boxed{{{answer}}}"
            out.append(Completion(r.uid, 0, text, 10, words + 5, "stop", r.sampling.seed, "stand-in"))
        return out


def test_budgets_are_below_the_chain_length_and_reproducible():
    cfg = config()
    assert [j.budget for j in jobs_for([chain(tokens=100)], {"p1": PROBLEM}, cfg)] == [20, 40, 80]
    assert [j.budget for j in jobs_for([chain(tokens=50)], {"p1": PROBLEM}, cfg)] == [20, 40]
    assert jobs_for([chain(tokens=15)], {"p1": PROBLEM}, cfg) == []
    log_cfg = BardConfig(budget_sampling=BudgetSamplingConfig(min_budget=10, max_budget=1000, per_chain=3))
    a = [j.budget for j in jobs_for([chain(tokens=500)], {"p1": PROBLEM}, log_cfg)]
    assert a == [j.budget for j in jobs_for([chain(tokens=500)], {"p1": PROBLEM}, log_cfg)]
    assert len(a) == 3 and all(10 <= b < 500 for b in a)


def test_eligibility_follows_the_config():
    cfg = config(min_thinking_tokens=50).compress
    assert eligible(chain(tokens=60), cfg)
    assert not eligible(chain(tokens=40), cfg)
    assert not eligible(chain(correct=False), cfg) and not eligible(chain(correct=None), cfg)
    assert not eligible(chain(truncated=True), cfg)
    assert eligible(chain(correct=False), config(only_correct=False).compress)


def test_eligibility_in_sql_is_the_python_rule_and_the_coverage_reads_it(tmp_path):
    """One rule, two forms: the SQL that compression coverage (and assemble's RL budgets) reads picks exactly the
    chains `eligible` picks, whatever the config."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bard_core.budget import length_coverage
    from bard_core.compress import coverage, eligible_sql

    rows = [chain(f"p1/s{i}", tokens=t, correct=c, truncated=tr)
            for i, (t, c, tr) in enumerate([(60, True, False), (40, True, False), (70, False, False), (80, None, False),
                                            (90, True, True), (300, True, False), (10, False, False)])]  # fmt: skip
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "part-00000.parquet")
    files = [str(tmp_path / "part-00000.parquet")]
    flat = BudgetSamplingConfig(mode="flat", min_budget=20, max_budget=320, flat_bins=4)
    for only_correct in (True, False):
        for minimum in (0, 50):
            cfg = BardConfig(compress=CompressConfig(generation=GEN, only_correct=only_correct, min_thinking_tokens=minimum),
                             budget_sampling=flat)  # fmt: skip
            picked = duckdb.sql(f"select uid from read_parquet({files!r}) where {eligible_sql(cfg.compress)}").fetchall()
            assert sorted(u for (u,) in picked) == sorted(r["uid"] for r in rows if eligible(r, cfg.compress))
            lengths = [r["thinking_tokens"] for r in rows if eligible(r, cfg.compress)]
            assert coverage(files, cfg) == length_coverage(lengths, flat)
    assert coverage(files, config()) is None  # only mode flat reweights


def test_prompt_carries_question_reasoning_and_target_and_literal_braces():
    cfg = config(system_prompt="You compress.").compress
    job = jobs_for([chain(tokens=30)], {"p1": {**PROBLEM, "question": "Is {budget} literal?"}}, config())[0]
    r = request(job, cfg)
    user = r.messages[-1]["content"]
    assert r.messages[0] == {"role": "system", "content": "You compress."}
    assert "Is {budget} literal?" in user and "step step" in user and "at most 20 tokens" in user
    assert "\\boxed{}" in user and r.sampling.n == 1


def test_prompt_tells_the_original_length_before_the_budget():
    """The compressor is told how long the chain is as well as the target; the budget stays the prompt's last
    number (the scripted compressor reads it there)."""
    job = jobs_for([chain(tokens=30)], {"p1": PROBLEM}, config())[0]
    user = request(job, config().compress).messages[-1]["content"]
    assert "is 30 tokens long" in user and "{original_tokens}" not in user
    assert re.findall(r"\d+", user.split("Reasoning:")[1])[-1] == "20"


def test_a_prompt_over_max_input_tokens_is_not_sent_and_is_rejected_as_too_long(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bard_core import contracts
    from bard_core.compress import prompt_tokenizer, summary

    backend = StandInCompressor(lambda target, attempt: (target - 5, "12", True))
    short, long = chain("p1/s0", tokens=30), chain("p1/s1", tokens=300)
    cfg = config(max_input_tokens=200)  # the short chain's prompt is about 110 Qwen3 tokens, the long one's 380
    assert prompt_tokenizer(cfg) == "qwen3", "an hf model that is not a local directory: the budget tokenizer counts"
    rows = compress([short, long], {"p1": PROBLEM}, backend, cfg)
    assert {uid for uid, _ in backend.calls} == {"p1/s0/b20"}, "the long chain's prompts were never sent"
    rejected = [r for r in rows if r["sample_uid"] == "p1/s1"]
    assert [r["budget"] for r in rejected] == [20, 40, 80]
    assert all(r["reject_reason"] == "too_long" and r["accepted"] is False and r["attempts"] == 0 for r in rejected)
    assert all(r["completion"] is None and r["teacher_thinking_tokens"] == 300 for r in rejected)
    assert [r for r in rows if r["sample_uid"] == "p1/s0"][0]["accepted"]
    # without the limit, the long chain is sent
    backend = StandInCompressor(lambda target, attempt: (target - 5, "12", True))
    assert all(r["accepted"] for r in compress([short, long], {"p1": PROBLEM}, backend, config()))

    # counted in compress_stats, and not as chains kept whole (attempts 0 too)
    pq.write_table(contracts.to_table(rows, contracts.COMPRESSIONS), tmp_path / "part-00000.parquet")
    stats = {r["tier"]: r for r in summary([str(tmp_path / "part-00000.parquet")], cfg).to_pylist()}
    assert stats["all"]["too_long"] == 3 and stats["all"]["kept_whole"] == 0 and stats["all"]["rewrites"] == 4
    assert stats["20"]["too_long"] == 1 and stats["20"]["acceptance"] == 0.5


def test_prompts_are_counted_with_the_compressors_own_tokenizer_when_it_is_at_hand(tmp_path):
    import shutil

    from bard_core.compress import prompt_tokenizer
    from bard_core.generation import OpenAIBackendConfig, ScriptedBackendConfig

    model = tmp_path / "model"
    model.mkdir()
    shutil.copy("configs/demo-tokenizer.json", model / "tokenizer.json")
    budget = BudgetConfig(tokenizer_mismatch_reason="only which tokenizer counts the prompt is looked at here")
    with_gen = lambda gen: BardConfig(budget=budget, compress=CompressConfig(generation=gen, max_input_tokens=10))  # noqa: E731
    assert prompt_tokenizer(with_gen(HFBackendConfig(backend="hf", model=str(model)))) == str(model)
    scripted = ScriptedBackendConfig(backend="scripted", role="compressor", tokenizer="configs/demo-tokenizer.json")
    assert prompt_tokenizer(with_gen(scripted)) == "configs/demo-tokenizer.json"
    endpoint = OpenAIBackendConfig(backend="openai", base_url="http://127.0.0.1:1/v1", model="Qwen/Qwen3-32B")
    assert prompt_tokenizer(with_gen(endpoint)) == "qwen3"


def test_a_qwen3_compressor_left_thinking_is_warned_about(tmp_path):
    from bard_core.compress import thinking_warning
    from bard_core.generation import ScriptedBackendConfig, VLLMBackendConfig

    def warning(gen):
        budget = BudgetConfig(tokenizer_mismatch_reason="only the compressor's thinking switch is looked at here")
        return thinking_warning(BardConfig(budget=budget, compress=CompressConfig(generation=gen)))

    assert "enable_thinking: false" in warning(VLLMBackendConfig(backend="vllm", model="Qwen/Qwen3-32B"))
    off = {"enable_thinking": False}
    assert warning(VLLMBackendConfig(backend="vllm", model="Qwen/Qwen3-32B", chat_template_kwargs=off)) is None
    assert warning(VLLMBackendConfig(backend="vllm", model="Qwen/Qwen2.5-32B-Instruct")) is None
    model = tmp_path / "my-compressor"  # a local directory: its config.json says what it is
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "qwen3_moe"}')
    assert "my-compressor is a Qwen3 model" in warning(HFBackendConfig(backend="hf", model=str(model)))
    (model / "config.json").write_text('{"model_type": "llama"}')
    assert warning(HFBackendConfig(backend="hf", model=str(model))) is None
    scripted = ScriptedBackendConfig(backend="scripted", role="compressor", tokenizer="configs/demo-tokenizer.json")
    assert warning(scripted) is None


def test_acceptance_reasons_and_retries_with_a_tighter_target():
    counter = cached_tokenizer("qwen3")
    # " go" is one Qwen3 token, so words = thinking tokens (+1 for the leading newline pair)
    assert counter.count(["\n" + " ".join(["go"] * 9) + "\n"]) == [11]

    def reply(target, attempt):
        if target == 80:
            return 5, "13", True  # fits, but the answer changed
        if target < 40 and target != 20:
            return target - 5, "12", True  # the retry at a tighter target fits
        if target == 40:
            return 60, "12", True  # overshoots
        return 10, "12", False  # budget 20: no closing tag

    backend = StandInCompressor(reply)
    rows = compress([chain(tokens=100)], {"p1": PROBLEM}, backend, config(attempts=3))
    by_budget = {r["budget"]: r for r in rows}
    assert [r["uid"] for r in rows] == ["p1/s0/b20", "p1/s0/b40", "p1/s0/b80"]
    assert by_budget[20]["reject_reason"] == "format" and not by_budget[20]["accepted"]
    assert by_budget[80]["reject_reason"] == "answer_changed" and by_budget[80]["within_budget"]
    assert not by_budget[80]["answer_preserved"]
    fit = by_budget[40]
    assert fit["accepted"] and fit["reject_reason"] is None and fit["attempts"] == 2
    assert fit["target"] < 40 and fit["thinking_tokens"] <= 40 and fit["answer_pred"] == "12"
    assert fit["teacher_thinking_tokens"] == 100
    # Only the overshoot was retried, and with the overshoot's own ratio: 40 * 40/62 -> 25.
    assert [t for uid, t in backend.calls if uid == "p1/s0/b40"] == [40, 25]


def test_over_budget_after_every_attempt_is_rejected_and_tau_gives_slack():
    backend = StandInCompressor(lambda target, attempt: (45, "12", True))
    rows = compress([chain(tokens=100)], {"p1": PROBLEM}, backend, config(attempts=2))
    over = {r["budget"]: r for r in rows}[40]
    assert over["reject_reason"] == "over_budget" and over["attempts"] == 2 and not over["within_budget"]
    slack = compress([chain(tokens=100)], {"p1": PROBLEM}, backend, config(attempts=1, tau=0.2))
    assert {r["budget"]: r for r in slack}[40]["accepted"]  # 47 tokens <= 40 * 1.2


def test_wrong_and_truncated_chains_are_not_sent():
    backend = StandInCompressor(lambda target, attempt: (5, "12", True))
    chains = [chain("p1/s0", correct=False), chain("p1/s1", truncated=True), chain("p1/s2", tokens=30)]
    rows = compress(chains, {"p1": PROBLEM}, backend, config())
    assert [r["uid"] for r in rows] == ["p1/s2/b20"] and rows[0]["accepted"]


def test_above_length_keeps_a_chain_that_fits_its_budget_whole_and_judges_it():
    """`compress.above_length`: budgets at or above the chain's length are drawn too; the chain is the row's
    text as it is (attempts 0: the compressor is not asked), with the same acceptance checks as a rewrite."""
    backend = StandInCompressor(lambda target, attempt: (target - 5, "12", True))
    whole = chain(tokens=50)
    whole.update(model="teacher", seed=7, finish_reason="stop", completion_tokens=60,
                 completion="<think>\n" + whole["thinking"] + "\n</think>\n\n\\boxed{12}")  # fmt: skip
    cfg = config(above_length=True)
    assert [j.budget for j in jobs_for([whole], {"p1": PROBLEM}, cfg)] == [20, 40, 80]
    assert [j.budget for j in jobs_for([whole], {"p1": PROBLEM}, config())] == [20, 40]

    rows = {r["budget"]: r for r in compress([whole], {"p1": PROBLEM}, backend, cfg)}
    assert [uid for uid, _ in backend.calls] == ["p1/s0/b20", "p1/s0/b40"], "the chain that fits is not sent"
    kept = rows[80]
    assert kept["attempts"] == 0 and kept["accepted"] and kept["completion"] == whole["completion"]
    assert kept["thinking_tokens"] == kept["teacher_thinking_tokens"] == 50 and kept["model"] == "teacher"
    assert rows[40]["attempts"] == 1 and rows[40]["thinking_tokens"] < 50

    # judged like any rewrite: a chain whose thinking never closed is rejected for its format
    broken = {**whole, "completion": whole["completion"].replace("</think>", "")}
    assert {r["budget"]: r for r in compress([broken], {"p1": PROBLEM}, backend, cfg)}[80]["reject_reason"] == "format"


def test_an_untagged_rewrite_is_the_whole_reply_when_the_budget_counts_the_completion():
    """A model without think tags (an instruct model, `budget.count: completion`): its rewrite is judged whole,
    with no <think> format to keep; the same reply is a format error when the budget counts thinking."""

    class Untagged:
        def generate(self, requests):
            return [Completion(r.uid, 0, "3+4+5 = 12. \\boxed{12}", 10, 12, "stop", 0, "m") for r in requests]

    counted = config().model_copy(update={"budget": BudgetConfig(count="completion")})
    rows = compress([chain(tokens=100)], {"p1": PROBLEM}, Untagged(), counted)
    assert [r["accepted"] for r in rows] == [True, True, True] and rows[0]["answer_pred"] == "12"
    tagged = compress([chain(tokens=100)], {"p1": PROBLEM}, Untagged(), config())
    assert {r["reject_reason"] for r in tagged} == {"format"}


def test_no_chain_to_compress_stops_before_any_engine_saying_what_to_change(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    import pytest

    from bard_core.compress import check_has_chains
    from bard_core.errors import BardError

    path = tmp_path / "teacher.parquet"
    rows = [{**chain(f"p1/s{i}", correct=False), "truncated": False} for i in range(3)]
    pq.write_table(pa.Table.from_pylist(rows), path)
    with pytest.raises(BardError, match="0 of 3 teacher samples have a verified answer.*teacher.sampling.n"):
        check_has_chains([str(path)], config())
    check_has_chains([str(path)], config(only_correct=False))  # unverified chains are asked for: no error
