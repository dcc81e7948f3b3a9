"""The thinking budget: how it is written into prompts, read back, counted and sampled.

See docs/architecture.md. A budget is a number of the student's tokens spent between `<think>` and `</think>`
(or in the whole completion, by config). Every stage counts it here. Reading the thinking span and the budget back
out of text is scoring's (`bard_core.scoring.thinking`, standard library only: the reward file ships it).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bard_core import scoring
from bard_core.scoring.thinking import budget_span, parse_budget

if TYPE_CHECKING:
    from bard_core.config import BardConfig, BudgetConfig, BudgetSamplingConfig

# ---------------------------------------------------------------- one config's budget


@dataclass(frozen=True)
class Budget:
    """The thinking budget of one config, every rule in one place: the text that carries it in a prompt
    (rendered in Python or SQL and parsed back, all from `budget.template`), the tokenizer that counts it,
    "within budget", and the completion limit a GRPO rollout gets."""

    cfg: BudgetConfig
    tau: float  # reward.tau: how rewards and metrics count adherence (compression passes compress.tau)
    completion_factor: float
    answer_tokens: int
    largest: int  # the largest budget budget_sampling can draw

    @classmethod
    def from_config(cls, config: BardConfig) -> Budget:
        g = config.grpo
        return cls(config.budget, config.reward.tau, g.completion_factor, g.answer_tokens, config.budget_sampling.largest)

    def add(self, question: str, budget: int | None) -> str:
        return add_budget(question, budget, self.cfg)

    def parse(self, prompt: str | list[dict]) -> int | None:
        return parse_budget(prompt, self.cfg)

    def sql(self, question: str, budget: str) -> str:
        """`add` as a DuckDB expression over a question and a (nullable) budget column."""
        before, _, after = self.cfg.template.partition("{budget}")
        quote = lambda text: "'" + text.replace("'", "''") + "'"  # noqa: E731
        return (f"case when {budget} is null then {question} else {question} || {quote(self.cfg.separator + before)}"
                f" || {budget}::varchar || {quote(after)} end")  # fmt: skip

    def count(self, completions: Sequence[str]) -> list[int]:
        """Budget tokens of each completion, by the student's tokenizer (`budget.tokenizer`)."""
        from bard_core.tokenizers import cached_tokenizer

        return count_budget_tokens(completions, cached_tokenizer(self.cfg.tokenizer), self.cfg)

    def within(self, length: int, budget: int, tau: float | None = None) -> bool:
        return scoring.within(length, budget, self.tau if tau is None else tau)

    def completion_limit(self, largest: int | None = None) -> int:
        """Tokens a GRPO completion may take, the same for every prompt (TRL has no per-prompt limit): room for the
        largest budget, and the answer. `largest` defaults to the largest `budget_sampling` can draw (fixed by config,
        so `--dry-run` shows OpenRLHF's); the trl backend still passes the largest of its prompts (see its note)."""
        return math.ceil(self.completion_factor * (self.largest if largest is None else largest)) + self.answer_tokens


# ---------------------------------------------------------------- prompts


def budget_text(budget: int, cfg: BudgetConfig) -> str:
    """The template with the budget in place of `{budget}`: split as `parse_budget` splits it, so what is
    written is what is read back (other braces are literal)."""
    before, _, after = cfg.template.partition("{budget}")
    return f"{before}{int(budget)}{after}"


def add_budget(question: str, budget: int | None, cfg: BudgetConfig) -> str:
    """The user turn: the question, then the budget text. Unbudgeted questions stay as they are."""
    if budget is None:
        return question
    return question + cfg.separator + budget_text(budget, cfg)


# ---------------------------------------------------------------- counting


def count_budget_tokens(
    completions: Sequence[str], tokenizer, cfg: BudgetConfig, opened: bool | Sequence[bool] = False
) -> list[int]:
    """Budget tokens of each completion, counted with the student's tokenizer, batched.

    `cfg.count == "thinking"`: the tokens of the thinking span (`split_thinking(...).thinking`);
    `"completion"`: the tokens of the whole completion. `tokenizer` is anything `as_counter` takes.
    """
    from bard_core.tokenizers import as_counter

    flags = [opened] * len(completions) if isinstance(opened, bool) else list(opened)
    return as_counter(tokenizer).count([budget_span(c, cfg, o) for c, o in zip(completions, flags, strict=True)])


def count_budget_tokens_from_ids(
    ids: Sequence[int],
    cfg: BudgetConfig,
    open_id: int | None,
    close_id: int | None,
    end_ids: frozenset[int] = frozenset(),
    opened: bool = False,
) -> int:
    """Budget tokens of one generated id sequence, located by the tag ids (exact for RL rollouts).

    The same rule as `split_thinking`, on ids: from the first opening tag (or the start) to the last
    closing tag; a cut-off thinking counts to the end. `end_ids` (EOS/padding) are not counted.
    """
    ids = list(ids)
    while ids and ids[-1] in end_ids:
        ids.pop()
    if cfg.count == "completion":
        return len(ids)
    close = len(ids) - 1 - ids[::-1].index(close_id) if close_id in ids else -1
    start = ids.index(open_id) if open_id in ids else -1
    if start >= 0 and (close < 0 or start < close):
        begin = start + 1
    elif opened or close >= 0:
        begin = 0
    else:
        return 0
    return len(ids) - begin if close < begin else close - begin


# ---------------------------------------------------------------- sampling budgets


def _rng(cfg: BudgetSamplingConfig, key: str) -> random.Random:
    # A string seed is hashed with SHA-512, so the draw for a row depends only on (seed, key):
    # the same on every worker and shard layout, and on a resumed run.
    return random.Random(f"{cfg.seed}:{key}")


def budget_bins(cfg: BudgetSamplingConfig) -> list[float]:
    """The `flat_bins + 1` log-spaced bin edges over [min_budget, max_budget]."""
    lo, hi = math.log(cfg.min_budget), math.log(cfg.max_budget)
    return [math.exp(lo + (hi - lo) * i / cfg.flat_bins) for i in range(cfg.flat_bins + 1)]


def tier_sql(cfg: BudgetSamplingConfig) -> str:
    """SQL naming the tier of a `budget` column: the budget itself in mode `tiers`, else its log-spaced bin."""
    if cfg.mode == "tiers":
        return "cast(budget as varchar)"
    edges = [round(e) for e in budget_bins(cfg)]
    cases = " ".join(f"when budget < {hi} then '{lo}-{hi}'" for lo, hi in zip(edges[:-1], edges[1:]))
    return f"case {cases} else '>= {edges[-1]}' end"


def length_coverage(lengths: Sequence[int], cfg: BudgetSamplingConfig) -> list[float]:
    """For each budget bin, the fraction of chains long enough to be compressed into it.

    Compute it once over all chains (not per shard) and pass it to every `sample_budgets` call of
    `mode: flat`; long budgets, which only long chains can take, get proportionally more weight.
    """
    edges = budget_bins(cfg)[:-1]
    n = max(len(lengths), 1)
    return [sum(1 for length in lengths if length > edge) / n for edge in edges]


def sample_budgets(
    cfg: BudgetSamplingConfig,
    key: str,
    *,
    below: int | None = None,
    count: int | None = None,
    coverage: Sequence[float] | None = None,
) -> list[int]:
    """Distinct budgets for one item (a teacher chain to compress, or an RL prompt), sorted.

    Reproducible from `(cfg.seed, key)`; use the row's uid as `key`. `below`: the chain's own
    length, every budget is smaller (compressing never lengthens); a chain too short for any budget
    gets []. `count` defaults to `cfg.per_chain`. Budgets in `cfg.holdout` are never drawn.
    Continuous modes draw one budget per equal stratum of the allowed range, so one chain's budgets
    spread over it. `mode: flat` reweights log-spaced bins by 1/coverage (see `length_coverage`);
    without `coverage` it is a stratified log-uniform draw over the bins.
    """
    count = cfg.per_chain if count is None else count
    rng = _rng(cfg, key)
    hi = cfg.max_budget if below is None else min(cfg.max_budget, below - 1)
    holdout = set(cfg.holdout)
    if cfg.mode == "tiers":
        allowed = sorted({t for t in cfg.tiers if t <= hi and t not in holdout})
        return sorted(rng.sample(allowed, min(count, len(allowed))))
    lo = cfg.min_budget
    if hi < lo:
        return []
    if cfg.mode == "flat":
        ranges = _flat_ranges(cfg, hi, count, coverage, rng)
    else:
        ranges = _strata(lo, hi, count, log=cfg.mode == "log_uniform")
    picks = {_draw(a, b, rng, log=cfg.mode != "uniform", holdout=holdout) for a, b in ranges}
    return sorted(p for p in picks if p is not None)


def _strata(lo: float, hi: float, count: int, log: bool) -> list[tuple[float, float]]:
    if log:
        a, b = math.log(lo), math.log(hi)
        edges = [math.exp(a + (b - a) * i / count) for i in range(count + 1)]
    else:
        edges = [lo + (hi - lo) * i / count for i in range(count + 1)]
    return list(zip(edges[:-1], edges[1:], strict=True))


def _flat_ranges(cfg, hi, count, coverage, rng) -> list[tuple[float, float]]:
    edges = budget_bins(cfg)
    bins = [k for k in range(cfg.flat_bins) if edges[k] <= hi]
    weights = {k: 1.0 / coverage[k] if coverage and coverage[k] > 0 else 1.0 for k in bins}
    chosen = []
    while bins and len(chosen) < count:  # weighted draws without replacement
        k = rng.choices(bins, weights=[weights[b] for b in bins])[0]
        bins.remove(k)
        chosen.append((edges[k], min(edges[k + 1], hi)))
    return chosen


def _draw(a: float, b: float, rng: random.Random, log: bool, holdout: set[int]) -> int | None:
    """An integer in [ceil(a), floor(b)], log- or linearly uniform, not held out; None if none is left."""
    lo, hi = math.ceil(a), math.floor(b)
    if hi < lo:
        return None
    x = math.exp(rng.uniform(math.log(lo), math.log(hi))) if log else rng.uniform(lo, hi)
    x = min(max(round(x), lo), hi)
    for step in range(hi - lo + 1):  # nearest allowed value if this one is held out
        for y in (x - step, x + step):
            if lo <= y <= hi and y not in holdout:
                return y
    return None
