"""Teacher sampling: requests built from problems, every sample graded and counted, splits respected.
Generation runs on the real hf backend with a tiny model built from config."""

import pytest

from bard_core.config import BardConfig, BudgetConfig, TeacherConfig
from bard_core.generation import Completion, HFBackendConfig, SamplingParams, make_backend
from bard_core.teacher import derived_seed, requests, sample
from bard_core.tokenizers import load_tokenizer

PROBLEMS = [
    {"uid": f"toy/{i}", "source": "toy", "question": q, "answer": a, "choices": None, "split": split}
    for i, (q, a, split) in enumerate(
        [("one plus two", "3", "train"), ("two plus two", "4", "train"), ("nine minus one", "8", "test")]
    )
]


def config(model: str, **teacher) -> BardConfig:
    return BardConfig(
        budget=BudgetConfig(tokenizer=f"{model}/tokenizer.json"),
        teacher=TeacherConfig(
            **{
                "generation": HFBackendConfig(backend="hf", model=model, batch_size=4),
                "sampling": SamplingParams(temperature=1.0, top_p=0.95, max_tokens=16, n=3, seed=7),
                **teacher,
            }
        ),
    )


def test_requests_fill_the_template_and_derive_a_seed_per_problem():
    cfg = TeacherConfig(system_prompt="Be brief.", prompt_template="Q: {question} Put it in \\boxed{}.")
    reqs = requests(PROBLEMS, cfg)
    assert reqs[0].messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Q: one plus two Put it in \\boxed{}."},
    ]
    seeds = [r.sampling.seed for r in reqs]
    assert len(set(seeds)) == 3 and seeds[0] == derived_seed(0, "toy/0") == requests(PROBLEMS, cfg)[0].sampling.seed
    assert derived_seed(1, "toy/0") != seeds[0]
    assert all(r.sampling.n == 4 and r.sampling.temperature == 0.6 and r.sampling.top_p == 0.95 for r in reqs)


def test_samples_of_the_chosen_splits_with_counts_and_flags(tiny_model):
    cfg = config(tiny_model)
    rows = sample(PROBLEMS, make_backend(cfg.teacher.generation), cfg)
    assert [r["uid"] for r in rows] == [f"toy/{p}/s{i}" for p in (0, 1) for i in range(3)]  # no test split
    base = derived_seed(7, "toy/0")
    assert [r["seed"] for r in rows[:3]] == [base, base + 1, base + 2]
    counter = load_tokenizer(f"{tiny_model}/tokenizer.json")
    for r in rows:
        assert r["thinking_tokens"] == counter.count([r["thinking"]])[0]
        assert 1 <= r["completion_tokens"] <= 16 and r["model"] == tiny_model
        assert r["truncated"] == (r["finish_reason"] == "length" or ("<think>" in r["completion"] and "</think>" not in r["completion"]))
        assert r["correct"] is False  # random weights: no boxed answer
        assert r["prompt"].startswith("one plus two" if r["problem_uid"] == "toy/0" else "two plus two")
    assert len({r["completion"] for r in rows}) >= 4
    assert sample(PROBLEMS[2:], make_backend(cfg.teacher.generation), cfg) == []


class StandInTeacher:
    """An external teacher model's replies, fixed: right for the first sample, wrong for the second."""

    def generate(self, reqs):
        answers = {"toy/0": "3", "toy/1": "4"}
        return [
            Completion(r.uid, i, f"<think>\nadd them\n</think>\n\\boxed{{{answers[r.uid] if i == 0 else 99}}}",
                       10, 12, "stop", r.sampling.seed + i, "stand-in")
            for r in reqs for i in range(r.sampling.n)
        ]  # fmt: skip


def test_answers_are_verified_against_the_gold(tiny_model):
    rows = sample(PROBLEMS, StandInTeacher(), config(tiny_model, sampling=SamplingParams(max_tokens=50, n=2)))
    assert [(r["uid"], r["correct"], r["answer_pred"]) for r in rows] == [
        ("toy/0/s0", True, "3"), ("toy/0/s1", False, "99"), ("toy/1/s0", True, "4"), ("toy/1/s1", False, "99"),
    ]  # fmt: skip
    assert all(r["thinking"] == "\nadd them\n" and not r["truncated"] for r in rows)


def test_a_template_without_question_is_a_config_error():
    with pytest.raises(ValueError, match="must contain \\{question\\}"):
        TeacherConfig(prompt_template="no placeholder")
