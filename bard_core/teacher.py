"""Stage `teacher`: n chains of thought per problem from the teacher model, verified against the gold.

Pure functions, rows in and rows out; `tasks/teacher.py` shards them over Ray actors holding the
engine and commits each chunk of rows as it completes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from bard_core.budget import count_budget_tokens, split_thinking
from bard_core.config import BardConfig, TeacherConfig
from bard_core.generation import GenerationBackend, GenerationRequest
from bard_core.prompts import chat, fill
from bard_core.tokenizers import cached_tokenizer
from bard_core.verify import grade

# Part of every artifact key: bumped when what the stage writes changes (tests/tasks/test_stage_versions.py pins it).
VERSION = 2


def derived_seed(seed: int, key: str) -> int:
    """A request's base seed from the config seed and a row's uid: stable on every worker and re-run, and
    different per row, so rows never share random draws. Below 2**31 minus room for the sample offsets."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % (2**31 - 2**16)


def user_turn(question: str, cfg: TeacherConfig) -> str:
    return fill(cfg.prompt_template, question=question)


def requests(problems: Sequence[dict], cfg: TeacherConfig) -> list[GenerationRequest]:
    return [
        GenerationRequest(
            uid=p["uid"],
            messages=chat(user_turn(p["question"], cfg), cfg.system_prompt),
            sampling=cfg.sampling.model_copy(update={"seed": derived_seed(cfg.sampling.seed, p["uid"])}),
        )
        for p in problems
    ]


def sample(problems: Sequence[dict], backend: GenerationBackend, config: BardConfig) -> list[dict]:
    """Every sample of these problems, graded, as `teacher_samples` rows in (problem, sample_idx) order."""
    wanted = [p for p in problems if p["split"] in config.teacher.splits]
    if not wanted:
        return []
    completions = backend.generate(requests(wanted, config.teacher))
    by_uid = {p["uid"]: p for p in wanted}
    tokens = count_budget_tokens([c.text for c in completions], cached_tokenizer(config.budget.tokenizer), config.budget)
    rows = []
    for completion, thinking_tokens in zip(completions, tokens, strict=True):
        problem = by_uid[completion.uid]
        graded = grade(
            completion.text, problem["answer"], budget_cfg=config.budget, verify_cfg=config.verify,
            choices=problem["choices"],
        )
        rows.append(
            {
                "uid": f"{problem['uid']}/s{completion.sample_idx}",
                "problem_uid": problem["uid"],
                "source": problem["source"],
                "sample_idx": completion.sample_idx,
                "model": completion.model,
                "prompt": user_turn(problem["question"], config.teacher),
                "completion": completion.text,
                "thinking": split_thinking(completion.text, config.budget).thinking,
                "answer_pred": graded.answer_pred,
                "correct": graded.correct,
                "thinking_tokens": thinking_tokens,
                "completion_tokens": completion.completion_tokens,
                "finish_reason": completion.finish_reason,
                "truncated": graded.truncated or completion.finish_reason == "length",
                "seed": completion.seed,
            }
        )
    return rows
