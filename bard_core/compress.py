"""Stage `compress`: each verified teacher chain rewritten to k budgets by the compressor model.

A rewrite is accepted only if its thinking fits `budget * (1 + tau)` by the student's tokenizer, its
final answer still verifies against the gold, and its format is intact (closed thinking, an answer
after it). Rewrites that only overshoot are retried with a tighter target, up to `attempts` tries;
every (chain, budget) ends as one row, accepted or with its reject reason.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from bard_core.budget import Budget, length_coverage, sample_budgets, tier_sql
from bard_core.config import BardConfig, CompressConfig
from bard_core.generation import Completion, GenerationBackend, GenerationRequest
from bard_core.prompts import chat, fill
from bard_core.scoring.answers import extract_answer
from bard_core.scoring.thinking import split_thinking
from bard_core.scoring.verify import check_answer
from bard_core.teacher import derived_seed


def eligible(sample: dict, cfg: CompressConfig) -> bool:
    """Whether a teacher sample is worth compressing: verified (by config), complete, long enough.
    `eligible_sql` is the same rule in SQL: change both together."""
    if cfg.only_correct and sample["correct"] is not True:
        return False
    return not sample["truncated"] and sample["thinking_tokens"] >= cfg.min_thinking_tokens


def eligible_sql(cfg: CompressConfig) -> str:
    """`eligible` as a condition on `teacher_samples` columns (a null `correct` fails it, as above)."""
    correct = " and correct" if cfg.only_correct else ""
    return f"not truncated{correct} and thinking_tokens >= {cfg.min_thinking_tokens}"


def coverage(teacher_files: list[str], config: BardConfig) -> list[float] | None:
    """For `budget_sampling.mode: flat`, the share of eligible chains long enough for each budget bin, over the
    whole teacher artifact: the same for every actor, and for the RL budgets that assemble draws."""
    if config.budget_sampling.mode != "flat":
        return None
    where = eligible_sql(config.compress)
    lengths = duckdb.sql(f"select thinking_tokens from read_parquet({teacher_files!r}) where {where}").fetchall()
    return length_coverage([n for (n,) in lengths], config.budget_sampling)


@dataclass
class Job:
    """One (chain, budget) through its attempts."""

    sample: dict
    question: str
    gold: str
    choices: list[str] | None
    budget: int
    target: int
    attempts: int = 0
    row: dict | None = None

    @property
    def uid(self) -> str:
        return f"{self.sample['uid']}/b{self.budget}"


def jobs_for(samples: Sequence[dict], problems: dict[str, dict], config: BardConfig, coverage=None) -> list[Job]:
    """The budgets each chain is compressed to: drawn from `budget_sampling`, seeded by the sample uid,
    all below the chain's own length (compressing never lengthens) unless `compress.above_length`."""
    jobs = []
    for s in samples:
        problem = problems[s["problem_uid"]]
        below = None if config.compress.above_length else s["thinking_tokens"]
        for budget in sample_budgets(config.budget_sampling, s["uid"], below=below, coverage=coverage):
            jobs.append(Job(s, problem["question"], problem["answer"], problem["choices"], budget, target=budget))
    return jobs


def request(job: Job, cfg: CompressConfig) -> GenerationRequest:
    user = fill(cfg.prompt_template, question=job.question, reasoning=job.sample["thinking"].strip(), budget=job.target)
    seed = derived_seed(cfg.sampling.seed, f"{job.uid}/a{job.attempts}")
    return GenerationRequest(
        uid=job.uid, messages=chat(user, cfg.system_prompt), sampling=cfg.sampling.model_copy(update={"n": 1, "seed": seed})
    )


def judge(job: Job, completion: Completion, thinking_tokens: int, config: BardConfig) -> dict:
    """The `compressions` row of one rewrite."""
    cfg = config.compress
    split = split_thinking(completion.text, config.budget)
    well_formed = (
        completion.finish_reason != "length" and not split.truncated and split.thinking.strip() != ""
        and completion.text.find(config.budget.think_open) >= 0
    )
    pred = extract_answer(split.answer, job.choices) if well_formed else None
    preserved = check_answer(pred, job.gold, config.verify, job.choices) is True
    within = Budget.from_config(config).within(thinking_tokens, job.budget, tau=cfg.tau)
    if pred is None:
        reason = "format"
    elif not preserved:
        reason = "answer_changed"
    elif not within:
        reason = "over_budget"
    else:
        reason = None
    return {
        "uid": job.uid,
        "sample_uid": job.sample["uid"],
        "problem_uid": job.sample["problem_uid"],
        "source": job.sample["source"],
        "budget": job.budget,
        "target": job.target,
        "attempts": job.attempts,
        "model": completion.model,
        "completion": completion.text,
        "thinking": split.thinking,
        "thinking_tokens": thinking_tokens,
        "teacher_thinking_tokens": job.sample["thinking_tokens"],
        "answer_pred": pred,
        "within_budget": within,
        "answer_preserved": preserved,
        "accepted": reason is None,
        "reject_reason": reason,
        "seed": completion.seed,
    }


def compress(
    samples: Sequence[dict], problems: dict[str, dict], backend: GenerationBackend, config: BardConfig, coverage=None
) -> list[dict]:
    """`compressions` rows for these teacher samples (the eligible ones), in (sample, budget) order.
    `problems` maps a problem uid to its row (question, answer, choices)."""
    cfg = config.compress
    jobs = jobs_for([s for s in samples if eligible(s, cfg)], problems, config, coverage)
    budget = Budget.from_config(config)
    pending = []
    for job in jobs:
        if job.budget >= job.sample["thinking_tokens"]:  # the chain fits as it is: judged, not rewritten
            job.row = judge(job, as_completion(job.sample), job.sample["thinking_tokens"], config)
        else:
            pending.append(job)
    while pending:
        for job in pending:
            job.attempts += 1
        completions = backend.generate([request(job, cfg) for job in pending])
        tokens = budget.count([c.text for c in completions])
        retry = []
        for job, completion, n_tokens in zip(pending, completions, tokens, strict=True):
            job.row = judge(job, completion, n_tokens, config)
            if job.row["reject_reason"] == "over_budget" and job.attempts < cfg.attempts:
                # Ask for less by the overshoot's own ratio, and at least by `retry_shrink`.
                job.target = max(1, math.floor(job.target * min(cfg.retry_shrink, job.budget / n_tokens)))
                retry.append(job)
        pending = retry
    return [job.row for job in jobs]


def as_completion(sample: dict) -> Completion:
    """A teacher sample as the rewrite of a budget it already fits (`attempts` stays 0: no compressor call)."""
    return Completion(uid=sample["uid"], sample_idx=0, text=sample["completion"], prompt_tokens=0,
                      completion_tokens=sample["completion_tokens"], finish_reason=sample["finish_reason"],
                      seed=sample["seed"], model=sample["model"])  # fmt: skip


def summary(files: list[str], config: BardConfig) -> pa.Table:
    """Per budget tier and overall: rewrites, acceptance rate, reject reasons, chains kept whole (they fit the
    budget as they are: `compress.above_length`), and the length error
    (L - B) / B of accepted rewrites. Tiers are the configured tiers, or the log-spaced bins."""
    return duckdb.sql(
        f"""
        with r as (select *, {tier_sql(config.budget_sampling)} as tier, (thinking_tokens - budget) / budget as rel_error
                   from read_parquet({files!r}))
        select coalesce(tier, 'all') as tier,
               count(*) as rewrites,
               count(distinct sample_uid) as chains,
               round(avg(accepted::int), 4) as acceptance,
               count(*) filter (where reject_reason = 'over_budget') as over_budget,
               count(*) filter (where reject_reason = 'answer_changed') as answer_changed,
               count(*) filter (where reject_reason = 'format') as format,
               count(*) filter (where attempts > 1) as retried,
               count(*) filter (where attempts = 0) as kept_whole,
               round(quantile_cont(rel_error, 0.1) filter (where accepted), 4) as rel_error_p10,
               round(quantile_cont(rel_error, 0.5) filter (where accepted), 4) as rel_error_p50,
               round(quantile_cont(rel_error, 0.9) filter (where accepted), 4) as rel_error_p90,
               round(avg(thinking_tokens / teacher_thinking_tokens) filter (where accepted), 4) as kept_ratio
        from r
        group by rollup (tier)
        order by grouping(tier), min(budget)
        """
    ).to_arrow_table()
