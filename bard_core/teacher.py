"""Stage `teacher`: n chains of thought per problem from the teacher model, verified against the gold.

Pure functions, rows in and rows out; `tasks/teacher.py` shards them over Ray actors holding the
engine and commits each chunk of rows as it completes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import duckdb
import pyarrow as pa

from bard_core.budget import Budget
from bard_core.config import BardConfig, TeacherConfig
from bard_core.generation import GenerationBackend, GenerationRequest
from bard_core.prompts import chat, fill
from bard_core.scoring.thinking import budget_span
from bard_core.scoring.verify import grade


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
    tokens = Budget.from_config(config).count([c.text for c in completions])
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
                # the chain compress rewrites: the thinking, or the whole reply when the budget counts it all
                "thinking": budget_span(completion.text, config.budget),
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


def summary(files: list[str]) -> pa.Table:
    """Per source and overall: samples, accuracy (over scorable samples), thinking-length percentiles,
    finish reasons and truncation."""
    return duckdb.sql(
        f"""
        select coalesce(source, 'all') as source,
               count(*) as samples,
               count(distinct problem_uid) as problems,
               round(avg(case when correct then 1.0 when not correct then 0.0 end), 4) as accuracy,
               count(*) filter (where correct is null) as unscorable,
               count(*) filter (where truncated) as truncated,
               count(*) filter (where finish_reason = 'stop') as finish_stop,
               count(*) filter (where finish_reason = 'length') as finish_length,
               count(*) filter (where finish_reason not in ('stop', 'length')) as finish_other,
               quantile_disc(thinking_tokens, 0.1) as thinking_p10,
               quantile_disc(thinking_tokens, 0.5) as thinking_p50,
               quantile_disc(thinking_tokens, 0.9) as thinking_p90,
               max(thinking_tokens) as thinking_max
        from read_parquet({files!r})
        group by rollup (source)
        order by grouping(source), source
        """
    ).to_arrow_table()
