"""Stage `compress`: each verified teacher chain rewritten to k budgets by the compressor model.

A rewrite is accepted only if its thinking fits `budget * (1 + tau)` by the student's tokenizer, its
final answer still verifies against the gold, and its format is intact (closed thinking, an answer
after it). Rewrites that only overshoot are retried with a tighter target, up to `attempts` tries;
every (chain, budget) ends as one row, accepted or with its reject reason. A prompt longer than
`compress.max_input_tokens` is never sent: its row is rejected as `too_long`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from bard_core.budget import Budget, length_coverage, sample_budgets, tier_sql
from bard_core.config import BardConfig, CompressConfig
from bard_core.errors import BardError
from bard_core.generation import Completion, GenerationBackend, GenerationRequest
from bard_core.prompts import chat, fill
from bard_core.scoring.answers import extract_answer
from bard_core.scoring.thinking import budget_span, split_thinking
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


def check_has_chains(teacher_files: list[str], config: BardConfig) -> None:
    """Stop before any engine starts when no teacher chain is eligible: a compressor with nothing to rewrite would
    leave SFT with no budget-aware rows. Says what was found and what to change."""
    cfg = config.compress
    [(total, usable, correct)] = duckdb.sql(
        f"select count(*), count(*) filter (where {eligible_sql(cfg)}), count(*) filter (where correct) "
        f"from read_parquet({teacher_files!r})"
    ).fetchall()
    if usable == 0:
        raise BardError(
            f"compress: no teacher chain to compress: {correct} of {total} teacher samples have a verified answer, "
            f"and none is eligible (compress.only_correct {cfg.only_correct}, complete, compress.min_thinking_tokens "
            f"{cfg.min_thinking_tokens}). The teacher is too weak for these problems: give it easier problems or a "
            f"stronger model, more samples (teacher.sampling.n) or room to finish (teacher.sampling.max_tokens)"
        )


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
    user = fill(cfg.prompt_template, question=job.question, reasoning=job.sample["thinking"].strip(), budget=job.target,
                original_tokens=job.sample["thinking_tokens"])  # fmt: skip
    seed = derived_seed(cfg.sampling.seed, f"{job.uid}/a{job.attempts}")
    return GenerationRequest(
        uid=job.uid, messages=chat(user, cfg.system_prompt), sampling=cfg.sampling.model_copy(update={"n": 1, "seed": seed})
    )


def prompt_tokenizer(config: BardConfig) -> str:
    """The tokenizer that counts compression prompts against `compress.max_input_tokens`: the compressor's own
    when it is at hand (the scripted engine's tokenizer.json, or a model directory holding one), else
    `budget.tokenizer` (an endpoint's or a Hub model's vocabulary is not here to load)."""
    gen = config.compress.generation
    for own in (getattr(gen, "tokenizer", None), getattr(gen, "model", None)):
        if own and (os.path.isfile(own) or os.path.isfile(os.path.join(own, "tokenizer.json"))):
            return own
    return config.budget.tokenizer


def too_long(jobs: Sequence[Job], config: BardConfig) -> set[str]:
    """Uids of the jobs whose compression prompt (system and user turns) exceeds `compress.max_input_tokens`:
    the compressor cannot read them, so they are not sent."""
    cfg = config.compress
    if cfg.max_input_tokens is None or not jobs:
        return set()
    from bard_core.tokenizers import cached_tokenizer

    texts = ["\n".join(m["content"] for m in request(job, cfg).messages) for job in jobs]
    counts = cached_tokenizer(prompt_tokenizer(config)).count(texts)
    return {job.uid for job, n in zip(jobs, counts, strict=True) if n > cfg.max_input_tokens}


def too_long_row(job: Job, config: BardConfig) -> dict:
    """The `compressions` row of a chain too long to send: nothing generated, nothing judged."""
    return {
        "uid": job.uid, "sample_uid": job.sample["uid"], "problem_uid": job.sample["problem_uid"],
        "source": job.sample["source"], "budget": job.budget, "target": job.target, "attempts": 0,
        "model": config.compress.generation.model, "completion": None, "thinking": None, "thinking_tokens": None,
        "teacher_thinking_tokens": job.sample["thinking_tokens"], "answer_pred": None, "within_budget": None,
        "answer_preserved": None, "accepted": False, "reject_reason": "too_long", "seed": None,
    }  # fmt: skip


def is_qwen3(model: str) -> bool:
    """A Qwen3-family model, by its name (a Hub id's or a directory's last part) or its directory's config.json
    (`model_type` qwen3, qwen3_moe, ...)."""
    if "qwen3" in os.path.basename(model.rstrip("/")).lower():
        return True
    path = os.path.join(model, "config.json")
    if not os.path.isfile(path):
        return False
    with open(path) as f:
        return str(json.load(f).get("model_type", "")).startswith("qwen3")


def thinking_warning(config: BardConfig) -> str | None:
    """A warning when the compressor is a Qwen3 model left thinking (its chat template's default): its own
    deliberation would land inside the rewrite's <think> and be counted as the compressed chain."""
    gen = config.compress.generation
    kwargs = getattr(gen, "chat_template_kwargs", None)
    if kwargs is None or kwargs.get("enable_thinking") is False or not is_qwen3(gen.model):
        return None
    return (f"compress.generation: {gen.model} is a Qwen3 model with thinking on: its own deliberation lands in the "
            "rewrite's <think> and counts as the compressed chain; set chat_template_kwargs: {enable_thinking: false}")


def judge(job: Job, completion: Completion, thinking_tokens: int, config: BardConfig) -> dict:
    """The `compressions` row of one rewrite."""
    cfg = config.compress
    split = split_thinking(completion.text, config.budget)
    if config.budget.count == "completion":  # the whole reply is the chain (a model without think tags)
        well_formed = completion.finish_reason != "length" and not split.truncated
    else:
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
        "thinking": budget_span(completion.text, config.budget),  # what was counted
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
    # Decided once, before any request: a retry's tighter target only shortens the prompt.
    unreadable = too_long(pending, config)
    for job in pending:
        if job.uid in unreadable:
            job.row = too_long_row(job, config)
    pending = [job for job in pending if job.uid not in unreadable]
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
    """Per budget tier and overall: rewrites, acceptance rate, reject reasons (`too_long`: the prompt was over
    `compress.max_input_tokens`, so not sent), chains kept whole (they fit the budget as they are:
    `compress.above_length`), and the length error
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
               count(*) filter (where reject_reason = 'too_long') as too_long,
               count(*) filter (where attempts > 1) as retried,
               count(*) filter (where attempts = 0 and reject_reason is distinct from 'too_long') as kept_whole,
               round(quantile_cont(rel_error, 0.1) filter (where accepted), 4) as rel_error_p10,
               round(quantile_cont(rel_error, 0.5) filter (where accepted), 4) as rel_error_p50,
               round(quantile_cont(rel_error, 0.9) filter (where accepted), 4) as rel_error_p90,
               round(avg(thinking_tokens / teacher_thinking_tokens) filter (where accepted), 4) as kept_ratio
        from r
        group by rollup (tier)
        order by grouping(tier), min(budget)
        """
    ).to_arrow_table()
