"""The pipeline's configuration: frozen pydantic models, one section per stage, loaded from YAML.

Every section has defaults, so a YAML file names only what differs. `load_config` applies
`--set key=value` overrides (values parsed as YAML) and turns validation errors into one
readable `ConfigError` naming the file, the key and what was expected.

Here: the pipeline as a whole (its stages, Ray, Prefect retries), `BardConfig`, its variants and `load_config`.
Below it: `stages` (each stage's section), `method` (budget, verify, reward), `generation` (engines), all built on
`section.Section`, and `loader` (files, overrides, error messages). Import every name from `bard_core.config`.
"""

import os
import re
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, model_validator

from bard_core.config.loader import DEFAULT_CONFIG, ConfigError, apply_override, dump_config, format_validation_error
from bard_core.config.loader import parse_override, read_profile
from bard_core.config.method import BudgetConfig, BudgetSamplingConfig, RewardConfig, VerifyConfig
from bard_core.config.section import Section
from bard_core.config.stages import DEFAULT_COMPRESS_TEMPLATE, AssembleConfig, CompressConfig, EvalConfig, EvalModel
from bard_core.config.stages import GRPOConfig, ProblemsConfig, ProblemSource, SFTConfig, StudentConfig, TeacherConfig



class StageResources(Section):
    """What one unit of a stage's work asks Ray for: a problems shard, a generation engine actor, a training task.
    Unset values keep the stage's own default (1 CPU; a GPU where the backend or the cluster has one)."""

    num_cpus: float | None = Field(None, ge=0)
    num_gpus: float | None = Field(None, ge=0)


# A variable whose name has one of these words (or ends with one: APIKEY, PGPASSWORD) holds a secret: its value
# must not sit in `ray.runtime_env.env_vars`, which is printed, written beside artifacts and stored by Prefect.
SECRET_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "CREDENTIALS")


def looks_secret(name: str) -> bool:
    """WANDB_API_KEY, HF_TOKEN, AWS_SECRET_ACCESS_KEY: yes. TOKENIZERS_PARALLELISM, NCCL_DEBUG: no."""
    return any(part.endswith(SECRET_WORDS) for part in name.upper().split("_"))


class RayConfig(Section):
    address: str | None = Field(None, description="attach to a cluster; default RAY_ADDRESS, else a local ray.init")
    num_cpus: int | None = Field(None, ge=1, description="CPUs for a local Ray; default: all")
    job_address: str | None = Field(
        None, description="Ray job server for the openrlhf backend (http://HEAD:8265); default RAY_API_SERVER_ADDRESS, "
        "else RAY_ADDRESS",
    )  # fmt: skip
    runtime_env: dict[str, Any] = Field(
        {}, description="Ray runtime env of submitted jobs (pip, env_vars, ...); bard adds the tokenizer env var. "
        "env_vars holds plain values only: names that look secret (*KEY*, *TOKEN*, ...) are refused, see secret_env",
    )  # fmt: skip
    secret_env: list[str] = Field(
        [], description="names of environment variables (WANDB_API_KEY, HF_TOKEN) that submitted jobs get: their "
        "values are read from bard's environment when a job is submitted, and never written, printed or stored",
    )  # fmt: skip
    job_poll_s: float = Field(5.0, gt=0, description="how often a submitted job's status and logs are read")
    resources: dict[str, StageResources] = Field(
        {}, description="per stage (problems, teacher, compress, eval, sft, grpo): CPUs and GPUs of each unit of work; "
        "how many engine actors run side by side is the stage's own `workers` (names checked against the stages "
        "when a run is planned)",
    )  # fmt: skip

    @model_validator(mode="after")
    def _secrets_by_name(self) -> "RayConfig":
        """Refuse a secret's value in the config (the messages name variables, never show values)."""
        env_vars = self.runtime_env.get("env_vars", {})
        if not isinstance(env_vars, dict):
            raise ValueError("runtime_env.env_vars: expected a mapping of variable names to values")
        secret = sorted(name for name in env_vars if looks_secret(str(name)))
        if secret:
            raise ValueError(
                f"runtime_env.env_vars: {', '.join(secret)} looks like a secret, and a value here is printed, written "
                f"beside the artifact and stored by Prefect; list the name in ray.secret_env instead "
                f"(`secret_env: [{', '.join(secret)}]`) and set the variable in the environment that runs bard"
            )  # fmt: skip
        bad = [i for i, name in enumerate(self.secret_env) if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name)]
        if bad:  # not shown: it may be the value itself
            raise ValueError(f"secret_env[{bad[0]}] is not an environment variable name: give the name, never the value")
        both = sorted(set(self.secret_env) & set(env_vars))
        if both:
            raise ValueError(f"secret_env: {', '.join(both)} is also in runtime_env.env_vars; keep it in one place")
        return self

    def for_stage(self, stage: str, **defaults: float) -> dict[str, float]:
        """Ray resource options of one unit of `stage`'s work: the configured values over the stage's defaults."""
        given = self.resources.get(stage, StageResources()).model_dump(exclude_none=True)
        return {**defaults, **given}


class OrchestrationConfig(Section):
    """How Prefect runs the stages. A stage that fails for a reason other than bad input (a crashed worker, a lost
    node, a network error past the backend's own retries) is retried: it resumes from what it had committed."""

    retries: int = Field(1, ge=0, description="retries of a stage after a transient failure (never after bad input)")
    retry_delay_s: float = Field(10.0, ge=0, description="wait before each retry")


class BardConfig(Section):
    home: str = Field(default_factory=lambda: os.environ.get("BARD_HOME", ".bard"))
    ray: RayConfig = RayConfig()
    orchestration: OrchestrationConfig = OrchestrationConfig()
    lock_timeout_s: float = Field(600.0, ge=0, description="how long a stage waits for another writer's lock")
    problems: ProblemsConfig = ProblemsConfig()
    budget: BudgetConfig = BudgetConfig()
    budget_sampling: BudgetSamplingConfig = BudgetSamplingConfig()
    verify: VerifyConfig = VerifyConfig()
    reward: RewardConfig = RewardConfig()
    teacher: TeacherConfig = TeacherConfig()
    compress: CompressConfig = CompressConfig()
    assemble: AssembleConfig = AssembleConfig()
    student: StudentConfig = StudentConfig()
    sft: SFTConfig = SFTConfig()
    grpo: GRPOConfig = GRPOConfig()
    eval: EvalConfig = EvalConfig()
    variants: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="named variations of this config (the paper's ablations): name -> {dotted.key: value}, as with "
        "--set. A variant's stages up to grpo run beside this config's, sharing the artifacts it leaves unchanged; "
        "eval.models name its models sft@NAME and grpo@NAME, and the one report sets them side by side",
    )

    @model_validator(mode="after")
    def _check_variants(self) -> "BardConfig":
        for name in self.variants:
            if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
                raise ValueError(f"variants: name {name!r} may hold only letters, digits, _ and -")
            try:
                variant_config(self, name)
            except ConfigError as err:
                raise ValueError(str(err)) from None
        for m in self.eval.models:
            stage, at, variant = (m.model or "").partition("@")
            if at and (stage not in ("sft", "grpo") or variant not in self.variants):
                raise ValueError(f"eval.models[{m.name}].model {m.model!r}: expected sft@V or grpo@V with V one of "
                                 f"variants ({', '.join(self.variants) or 'none defined'})")  # fmt: skip
        return self

    @model_validator(mode="after")
    def _tokenizers_agree(self) -> "BardConfig":
        """Budgets are counted in the student's tokens: every tokenizer setting must count as budget.tokenizer does."""
        if self.budget.tokenizer_mismatch_reason:
            return self
        others = []
        if self.student.tokenizer or self.student.model:  # a student left at its defaults is not compared
            name = "student.tokenizer" if self.student.tokenizer else "student.model"
            others.append((name, self.student.tokenizer or self.student.model))
        engines = [("teacher.generation", self.teacher.generation), ("compress.generation", self.compress.generation)]
        engines = [(where, gen.model_dump()) for where, gen in engines if gen is not None]
        engines += [(f"eval.models[{m.name}].generation", m.generation) for m in self.eval.models if m.generation]
        others += [(f"{where}.tokenizer", gen["tokenizer"]) for where, gen in engines
                   if gen["backend"] == "scripted" and gen.get("tokenizer")]  # fmt: skip
        for name, spec in others:
            if not same_tokenizer(self.budget.tokenizer, spec):
                raise ValueError(
                    f"budget.tokenizer {self.budget.tokenizer!r} and {name} {spec!r} count tokens differently, so "
                    f"budgets would not be counted in the student's tokens: name the same tokenizer in both, or set "
                    f"budget.tokenizer_mismatch_reason to say why they differ"
                )
        return self


# Texts two tokenizers must split alike to count budgets alike: words, digits, LaTeX, the thinking tags, accents.
TOKENIZER_PROBES = ["Think for at most 120 tokens.", "<think>\n12 + 34 = 46, so x = 3.5\n</think>\n\n\\boxed{46}",
                    "The café's naïve résumé: 1,000,000 ÷ 7 ≈ 142857.14"]  # fmt: skip


def same_tokenizer(a: str, b: str) -> bool:
    """Whether two tokenizer settings ('qwen3', a tokenizer.json, a model directory) count alike: the same file, or
    the same token counts on `TOKENIZER_PROBES`. A file not at hand yet (a profile's model to fill in) is trusted."""
    from bard_core.scoring.tokens import QWEN3_SPEC, tokenizer_file
    from bard_core.tokenizers import cached_tokenizer

    def resolved(spec: str) -> str:
        return os.path.abspath(tokenizer_file(spec))

    if a == b or (QWEN3_SPEC not in (a, b) and resolved(a) == resolved(b)):
        return True
    if any(spec != QWEN3_SPEC and not os.path.isfile(resolved(spec)) for spec in (a, b)):
        return True
    try:
        return cached_tokenizer(a).count(TOKENIZER_PROBES) == cached_tokenizer(b).count(TOKENIZER_PROBES)
    except Exception:  # a file tokenizers cannot read: the stage that loads it names the setting and the file
        return True


def variant_config(config: BardConfig, name: str) -> BardConfig:
    """Variant `name` of `config`: its overrides applied to the resolved config. The evaluation belongs to the
    base config (it compares the variants), so a variant keeps the default `eval` section and has no variants."""
    data = config.model_dump(mode="json", exclude={"variants", "eval"})
    for dotted, value in config.variants[name].items():
        path = dotted.split(".")
        if path[0] in ("eval", "variants", "home"):
            raise ConfigError(f"variants.{name}: {dotted}: a variant changes how models are made; "
                              f"{path[0]} belongs to the base config")  # fmt: skip
        apply_override(data, path, value)
    try:
        return BardConfig.model_validate(data)
    except ValidationError as err:
        problems = format_validation_error(err, "").splitlines()[1:]
        raise ConfigError("; ".join(f"variants.{name}: {line.strip()}" for line in problems)) from None


def load_config(path: str | Path | None = None, overrides: list[str] | None = None, home: str | None = None) -> BardConfig:
    """Load a YAML profile (default configs/demo.yaml), apply overrides, validate."""
    path = Path(path) if path else DEFAULT_CONFIG
    data = read_profile(path)
    for item in overrides or []:
        apply_override(data, *parse_override(item))
    if home:
        data["home"] = home
    # The overrides' keys only: a value typed on the command line may be a secret (see RayConfig.secret_env).
    origin = str(path) + (f" with --set {' '.join(o.partition('=')[0] + '=...' for o in overrides)}" if overrides else "")
    try:
        return BardConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, origin)) from None
