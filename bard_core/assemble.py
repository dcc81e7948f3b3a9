"""Stage `assemble`, the decisions made per problem: which training problems are kept (exact and
near-duplicate removal, decontamination against the evaluation sets), which split each goes to, and
the budgets of the RL prompts. Problems are few next to samples (one question each), so this runs in
Python; the samples themselves are streamed by DuckDB in `tasks/assemble.py` and never loaded here.

Every decision is a pure function of the inputs and `assemble.seed`, so the artifact is reproducible.
"""

from __future__ import annotations

import hashlib
import re
import struct
from collections import defaultdict
from collections.abc import Iterable, Sequence
from functools import lru_cache

import pyarrow as pa

from bard_core.budget import Budget, sample_budgets
from bard_core.config import AssembleConfig, BardConfig
from bard_core.prompts import chat
from bard_core.scoring.reward import reward_label
from bard_core.scoring.verify import gold_is_parseable

_WORD = re.compile(r"[a-z0-9]+")


def normalize_question(text: str) -> str:
    """Lower case, words and numbers only: two questions that differ in spacing, case or punctuation
    are the same question."""
    return " ".join(_WORD.findall(text.lower()))


def ngrams(normalized: str, n: int) -> set[str]:
    """Word n-grams of a normalised question; a question shorter than n words is one gram."""
    words = normalized.split()
    if len(words) <= n:
        return {normalized} if normalized else set()
    return {" ".join(words[i : i + n]) for i in range(len(words) - n + 1)}


def stable_hash(seed: int, key: str) -> int:
    """A 64-bit hash of (seed, key), the same on every machine and run (Python's hash() is salted)."""
    return struct.unpack(">Q", hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest())[0]


def dedup(problems: Sequence[dict], cfg: AssembleConfig) -> dict[str, tuple[str, str]]:
    """Problems to drop as duplicates: uid -> (reason, the uid of the problem kept in its place).

    Exact: the same normalised question. Near: word-n-gram Jaccard similarity at least
    `near_dup_threshold`, found with MinHash LSH (`minhash_bands` x `minhash_rows` hashes) and checked
    exactly. The problem kept is always the first by uid, so the result does not depend on input order.
    """
    ordered = sorted(problems, key=lambda p: p["uid"])
    dropped: dict[str, tuple[str, str]] = {}
    first: dict[str, str] = {}
    grams: dict[str, set[str]] = {}
    for p in ordered:
        text = normalize_question(p["question"])
        if text in first:
            dropped[p["uid"]] = ("duplicate", first[text])
        else:
            first[text] = p["uid"]
            grams[p["uid"]] = ngrams(text, cfg.near_dup_ngram)

    buckets: dict[tuple, list[str]] = defaultdict(list)
    for uid, g in grams.items():
        for key in _band_keys(g, cfg.minhash_bands, cfg.minhash_rows):
            buckets[key].append(uid)
    order = {p["uid"]: i for i, p in enumerate(ordered)}
    for members in buckets.values():
        if len(members) < 2:
            continue
        for j, later in enumerate(members):
            if later in dropped:
                continue
            for earlier in members[:j]:
                if earlier not in dropped and order[earlier] < order[later]:
                    if _jaccard(grams[earlier], grams[later]) >= cfg.near_dup_threshold:
                        dropped[later] = ("near_duplicate", earlier)
                        break
    return dropped


def _band_keys(grams: set[str], bands: int, rows: int) -> list[tuple]:
    """MinHash signature in bands: the minimum of (gram hash XOR a fixed random mask) per mask."""
    import numpy as np

    if not grams:
        return []
    hashed = np.array([stable_hash(0, g) for g in grams], dtype=np.uint64)
    signature = np.bitwise_xor.outer(_masks()[: bands * rows], hashed).min(axis=1)
    return [(k, *signature[k * rows : (k + 1) * rows].tolist()) for k in range(bands)]


@lru_cache(maxsize=1)
def _masks():
    """The MinHash family: 1024 fixed random 64-bit masks (built once, not per question)."""
    import numpy as np

    return np.array([stable_hash(i, "minhash") for i in range(1024)], dtype=np.uint64)


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def contamination(
    problems: Sequence[dict], eval_sets: dict[str, Iterable[str]], cfg: AssembleConfig
) -> dict[str, tuple[str, str]]:
    """Training problems that overlap an evaluation set: uid -> ("contaminated", benchmark).

    A problem is contaminated when at least `decontam_threshold` of its word `decontam_ngram`-grams
    occur in one benchmark's questions (a question shorter than n words is one gram, so an exact copy
    of a short question is caught). The benchmark named is the one with the largest overlap.
    """
    index: dict[str, set[str]] = defaultdict(set)
    for benchmark, questions in eval_sets.items():
        for q in questions:
            for g in ngrams(normalize_question(q), cfg.decontam_ngram):
                index[g].add(benchmark)
    hits = {}
    for p in problems:
        grams = ngrams(normalize_question(p["question"]), cfg.decontam_ngram)
        if not grams:
            continue
        counts: dict[str, int] = defaultdict(int)
        for g in grams:
            for benchmark in index.get(g, ()):
                counts[benchmark] += 1
        if counts:
            benchmark, shared = max(sorted(counts.items()), key=lambda kv: kv[1])
            if shared / len(grams) >= cfg.decontam_threshold:
                hits[p["uid"]] = ("contaminated", benchmark)
    return hits


def assign_split(uid: str, cfg: AssembleConfig) -> str:
    """Train or validation, by problem, from a seeded hash: every row of a problem lands in one split."""
    return "validation" if stable_hash(cfg.seed, uid) / 2**64 < cfg.validation_fraction else "train"


def order_key(uid: str, cfg: AssembleConfig) -> int:
    """The seeded shuffle: rows are written in this order of their problem (a problem's rows stay together)."""
    return stable_hash(cfg.seed + 1, uid) >> 1  # fits a signed 64-bit column


def rl_prompts(kept: Sequence[dict], plan: pa.Table, config: BardConfig, coverage) -> tuple[list[dict], list[str]]:
    """One RL prompt per problem and budget (budgets from `budget_sampling`; in mode flat reweighted by the
    `coverage` of the chains compression takes, `bard_core.compress.coverage`), the gold as label; problems whose
    gold cannot be graded are left out and reported. Rows in the plan's (split, shuffle) order."""
    cfg, budget = config.assemble, Budget.from_config(config)
    split = dict(zip(plan.column("problem_uid").to_pylist(), plan.column("split").to_pylist()))
    order = dict(zip(plan.column("problem_uid").to_pylist(), plan.column("order_key").to_pylist()))
    sampling = config.budget_sampling.model_copy(update={"holdout": []}) if cfg.rl_includes_holdout else config.budget_sampling
    rows, unscorable = [], []
    for p in sorted(kept, key=lambda p: (split[p["uid"]], order[p["uid"]], p["uid"])):
        if not gold_is_parseable(p["answer"], p["choices"]):
            unscorable.append(p["uid"])
            continue
        for b in sample_budgets(sampling, p["uid"], count=cfg.rl_budgets_per_problem, coverage=coverage):
            rows.append({
                "uid": f"{p['uid']}/b{b}", "problem_uid": p["uid"], "prompt": chat(budget.add(p["question"], b)),
                "answer": p["answer"], "budget": b, "label": reward_label(p["answer"], b, p["choices"]),
                "split": split[p["uid"]],
            })  # fmt: skip
    return rows, sorted(unscorable)


def stats(con, sft_files: str, budget_tier: str) -> tuple[pa.Table, pa.Table]:
    """Rows and thinking-length percentiles per kind, budget tier and split of `sft_dataset` (a glob); a log2
    histogram per tier. `budget_tier`: `bard_core.budget.tier_sql`."""
    sft = sft_files.replace("'", "''")
    tier = f"case when budget is null then 'none' else {budget_tier} end"
    summary = con.sql(
        f"""
        select kind, {tier} as tier, split, count(*) as rows, count(distinct problem_uid) as problems,
               quantile_disc(thinking_tokens, 0.1) as thinking_p10, quantile_disc(thinking_tokens, 0.5) as thinking_p50,
               quantile_disc(thinking_tokens, 0.9) as thinking_p90, max(thinking_tokens) as thinking_max
        from read_parquet('{sft}') group by all order by kind, min(budget) nulls last, split
        """
    ).to_arrow_table()
    histogram = con.sql(
        f"""
        select kind, {tier} as tier,
               cast(pow(2, floor(log2(greatest(thinking_tokens, 1)))) as bigint) as tokens_from,
               count(*) as rows
        from read_parquet('{sft}') group by all order by kind, min(budget) nulls last, tokens_from
        """
    ).to_arrow_table()
    return summary, histogram
