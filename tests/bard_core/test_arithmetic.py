"""The demo domain and its scripted teacher and compressor."""

import hashlib
import random
from pathlib import Path

import pytest

from bard_core import arithmetic
from bard_core.budget import add_budget, count_budget_tokens
from bard_core.config import DEFAULT_COMPRESS_TEMPLATE, BudgetConfig, VerifyConfig
from bard_core.generation import GenerationRequest, SamplingParams, ScriptedBackendConfig, make_backend
from bard_core.prompts import fill
from bard_core.scoring.thinking import split_thinking
from bard_core.scoring.verify import grade
from bard_core.tokenizers import cached_tokenizer

ROOT = Path(__file__).resolve().parents[2]
TOKENIZER = str(ROOT / arithmetic.DEMO_TOKENIZER)


def test_problems_stay_in_range_and_are_seeded():
    rng = random.Random(0)
    for _ in range(500):
        p = arithmetic.make_problem(rng)
        assert 10 <= p.start <= 99 and 2 <= len(p.ops) <= 5
        total = p.start
        for op, n in p.ops:
            assert 1 <= n <= 9
            total = total + n if op == "+" else total - n
            assert 0 <= total <= 99
        assert arithmetic.parse_question(arithmetic.PHRASINGS[1].format(expr=p.expression)) == p and p.answer == total
    assert arithmetic.problems(5, 1) == arithmetic.problems(5, 1) != arithmetic.problems(5, 2)
    records = arithmetic.problems(200, 0)
    for r in records:  # every phrasing parses back to a problem with the record's answer
        assert str(arithmetic.parse_question(r["question"]).answer) == r["answer"], r
    assert {r["question"].split()[0] for r in records} == {x.split()[0] for x in arithmetic.PHRASINGS}


def test_tiers_shrink_and_keep_the_answer():
    p = arithmetic.Problem(43, (("+", 9), ("-", 6), ("+", 9)))
    lines = arithmetic.worked_lines(p, random.Random(0))
    tiers = [arithmetic.tier(lines, t) for t in arithmetic.TIERS]
    sizes = [len("\n".join(t)) for t in tiers]
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == len(sizes)
    assert tiers[2] == ["43 + 9 = 52 .", "52 - 6 = 46 .", "46 + 9 = 55 ."]
    assert tiers[3] == ["43 + 9 - 6 = 46 .", "46 + 9 = 55 ."]
    assert tiers[4] == ["55 ."]
    assert sum(arithmetic.kind(x) == "check" for x in tiers[0]) == 3 and not any(arithmetic.kind(x) == "check" for x in tiers[1])


def test_slips_change_the_answer_and_verification_catches_them():
    p = arithmetic.Problem(43, (("+", 9), ("-", 6), ("+", 9)))
    budget, verify = BudgetConfig(), VerifyConfig()
    verdicts = []
    for seed in range(200):
        lines = arithmetic.worked_lines(p, random.Random(seed), slip_rate=0.3)
        text = arithmetic.completion(lines, arithmetic.final_answer(lines))
        verdicts.append(grade(text, "55", budget_cfg=budget, verify_cfg=verify).correct)
    wrong = verdicts.count(False) / len(verdicts)
    assert 0.2 < wrong < 0.4 and None not in verdicts


def test_the_committed_tokenizer_is_the_generated_one_and_digits_are_tokens():
    assert Path(TOKENIZER).read_text() == arithmetic.tokenizer_json(BudgetConfig().template)
    tok = cached_tokenizer(TOKENIZER)
    p = arithmetic.Problem(43, (("+", 9), ("-", 6)))
    text = arithmetic.completion(arithmetic.worked_lines(p, random.Random(1)), 46)
    assert count_budget_tokens(["<think>\n43 .\n</think>"], tok, BudgetConfig()) == [5]  # \n 4 3 " ." \n
    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(TOKENIZER)
    encoded = raw.encode(text)
    assert "<unk>" not in encoded.tokens and raw.decode(encoded.ids) == text, "exact round trip"
    prompt = raw.encode(add_budget(arithmetic.PHRASINGS[3].format(expr=p.expression), 32, BudgetConfig()))
    assert "<unk>" not in prompt.tokens, prompt.tokens


def test_the_wordings_of_a_line_differ_in_text_not_in_length():
    # a solution's length is set by its problem and tier alone, so a student that always picks one wording
    # is not shorter or longer than the reference for it
    tok = cached_tokenizer(TOKENIZER)
    fields = {"total": 43, "after": 52, "inverse": "-", "n": 9, "before": 43, "answer": 55}
    for wordings in (arithmetic.RESTATE, arithmetic.CHECK, arithmetic.OPENING, arithmetic.CLOSING):
        lengths = set(tok.count([w.format(**fields) for w in wordings]))
        assert len(set(w.format(**fields) for w in wordings)) == len(wordings) and len(lengths) == 1, wordings
    p = arithmetic.Problem(43, (("+", 9), ("-", 6), ("+", 9)))
    full = set(tok.count(["\n".join(arithmetic.worked_lines(p, random.Random(s))) for s in range(20)]))
    assert len(full) == 1


def requests(user: str, seeds=range(1)):
    return [GenerationRequest(uid=f"r{s}", messages=[{"role": "user", "content": user}],
                              sampling=SamplingParams(max_tokens=400, seed=s)) for s in seeds]  # fmt: skip


def test_scripted_teacher_writes_verified_worked_solutions():
    teacher = make_backend(ScriptedBackendConfig(backend="scripted", role="teacher", slip_rate=0.0))
    out = teacher.generate(requests("Compute 43 + 9 - 6 + 9 .\n\nPlease reason step by step.", seeds=range(5)))
    assert len({c.text for c in out}) > 1, "wording varies with the seed"
    for c in out:
        assert c.finish_reason == "stop" and c.text.startswith("<think>\n")
        assert grade(c.text, "55", budget_cfg=BudgetConfig(), verify_cfg=VerifyConfig()).correct is True
    again = teacher.generate(requests("Compute 43 + 9 - 6 + 9 .", seeds=range(5)))
    assert [c.text for c in out] == [c.text for c in again], "same seeds, same text"
    with pytest.raises(Exception, match="not an arithmetic problem"):
        teacher.generate(requests("What is the capital of France?"))


def test_scripted_compressor_returns_the_most_detailed_tier_that_fits():
    config = BudgetConfig()
    tok = cached_tokenizer(TOKENIZER)
    lines = arithmetic.worked_lines(arithmetic.Problem(43, (("+", 9), ("-", 6), ("+", 9))), random.Random(0))
    reasoning = "\n".join(lines)
    lengths = [count_budget_tokens([arithmetic.completion(arithmetic.tier(lines, t), 55)], tok, config)[0] for t in arithmetic.TIERS]
    exact = make_backend(ScriptedBackendConfig(backend="scripted", role="compressor", tokenizer=TOKENIZER, overshoot_rate=0.0))
    for budget in range(lengths[-1], lengths[0] + 5):
        user = fill(DEFAULT_COMPRESS_TEMPLATE, question="Compute 43 + 9 - 6 + 9 .", reasoning=reasoning, budget=budget)
        (c,) = exact.generate(requests(user))
        used = count_budget_tokens([c.text], tok, config)[0]
        assert used == max(n for n in lengths if n <= budget), budget
        assert grade(c.text, "55", budget_cfg=config, verify_cfg=VerifyConfig()).correct is True
        assert split_thinking(c.text, config).thinking.strip()

    sloppy = make_backend(ScriptedBackendConfig(backend="scripted", role="compressor", tokenizer=TOKENIZER, overshoot_rate=0.5))
    user = fill(DEFAULT_COMPRESS_TEMPLATE, question="Compute 43 + 9 - 6 + 9 .", reasoning=reasoning, budget=lengths[2])
    used = [count_budget_tokens([c.text], tok, config)[0] for c in sloppy.generate(requests(user, seeds=range(40)))]
    assert set(used) == {lengths[1], lengths[2]}, "sometimes one tier too detailed: over the budget"


def test_scripted_reference_answers_a_student_prompt_with_the_tier_that_fits():
    config = BudgetConfig()
    tok = cached_tokenizer(TOKENIZER)
    reference = make_backend(ScriptedBackendConfig(backend="scripted", role="reference", tokenizer=TOKENIZER))
    for budget in (4, 12, 30, 200):
        prompt = add_budget("Compute 43 + 9 - 6 + 9 .", budget, config)
        used = []
        for c in reference.generate(requests(prompt, seeds=range(10))):
            assert grade(c.text, "55", budget_cfg=config, verify_cfg=VerifyConfig()).correct is True, "never a slip"
            used.append(count_budget_tokens([c.text], tok, config)[0])
        assert max(used) <= max(budget, min(used)), "within the budget unless the answer alone is longer"
        if budget == 200:
            assert min(used) > 30, "a large budget gets the most detailed tier"
    with pytest.raises(Exception, match="followed by its budget"):
        reference.generate(requests("Compute 43 + 9 - 6 + 9 ."))


def test_the_scripted_engines_output_is_pinned_to_their_model_version():
    """The scripted engines' rows are keyed by `model` (config), not by their code: a change to what they write
    must come with a new default `model`, or homes reuse rows the old scripts wrote. This pins the pair."""
    config = BudgetConfig()
    teacher = make_backend(ScriptedBackendConfig(backend="scripted", role="teacher", slip_rate=0.3))
    compressor = make_backend(ScriptedBackendConfig(backend="scripted", role="compressor", tokenizer=TOKENIZER))
    reference = make_backend(ScriptedBackendConfig(backend="scripted", role="reference", tokenizer=TOKENIZER))
    texts = []
    for p in arithmetic.problems(8, seed=3):
        (chain,) = teacher.generate(requests(p["question"], seeds=[7]))
        reasoning = split_thinking(chain.text, config).thinking
        for budget in (6, 20, 60):
            user = fill(DEFAULT_COMPRESS_TEMPLATE, question=p["question"], reasoning=reasoning, budget=budget)
            texts += [chain.text, compressor.generate(requests(user, seeds=[budget]))[0].text]
            texts.append(reference.generate(requests(add_budget(p["question"], budget, config), seeds=[budget]))[0].text)
    digest = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:16]
    model = ScriptedBackendConfig.model_fields["model"].default
    assert (model, digest) == ("scripted-arithmetic-4", "497ba4de034e9904"), (
        f"the scripted engines now write {digest}: bump the default `model` in ScriptedBackendConfig and pin both here"
    )
