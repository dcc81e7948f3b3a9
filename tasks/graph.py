"""The pipeline's stage graph, declared once, and the plan of a run.

Each stage is one `Stage` value below: its name, version, what of the config its key reads, the stages it reads,
and its runner (in `tasks/<stage>.py`). The pipeline flow, the CLI (`bard run`, `--dry-run`, `bard stage`), the
deployments and the variant plan all read `STAGES`. `Plan(config)` computes each step's key once, inputs first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bard_core.config import BardConfig, ConfigError, variant_config
from bard_core.errors import BardError
from storage import catalog
from storage.artifacts import ArtifactStore, Manifest, artifact_key
from tasks import assemble, compress, grpo, problems, report, sft, teacher
from tasks import eval as evaluation
from tasks.build import StageRun, build_artifact


def nothing_to_check(config: BardConfig) -> None:
    pass


def in_this_process(config: BardConfig, inputs: dict[str, Path]) -> list[str]:
    return ["this process, no GPU"]


@dataclass(frozen=True)
class Stage:
    """One stage as the rest of bard sees it; its own work is `run`, in tasks/<name>.py."""

    name: str
    version: int  # part of every key: bump it when what the stage writes changes (tests/tasks/test_stage_versions.py)
    key_config: Callable[[BardConfig], dict]  # the config its artifact depends on
    inputs: tuple[str, ...] | Callable[[BardConfig], dict[str, str]]  # stages read; or {label: "stage[@variant]"}
    run: Callable[[StageRun], tuple[dict[str, int], dict]]  # commits its tables under run.path, resuming
    summary: Callable[[Manifest], list[dict]]  # the table its Prefect run publishes
    check: Callable[[BardConfig], None] = nothing_to_check  # settings it cannot run with fail before anything starts
    per_variant: bool = True  # a config variant makes its own (data and models; the evaluation compares them)
    command: Callable[[BardConfig, Path, dict[str, Path]], str] | None = None  # its cluster job, when it submits one
    runs_on: Callable[[BardConfig, dict[str, Path]], list[str]] = in_this_process  # engines and GPUs, for --dry-run

    def input_refs(self, config: BardConfig) -> dict[str, str]:
        return self.inputs(config) if callable(self.inputs) else {name: name for name in self.inputs}


# The pipeline, in order. Stage(name, version, key_config, inputs, run, summary, check, ...): see `Stage`.
STAGES: dict[str, Stage] = {s.name: s for s in [
    Stage("problems", 2, problems.key_config, (), problems.run, problems.summary, problems.check,
          runs_on=problems.runs_on),
    Stage("teacher", 2, teacher.key_config, ("problems",), teacher.run, teacher.summary, teacher.check,
          runs_on=teacher.runs_on),
    Stage("compress", 3, compress.key_config, ("teacher",), compress.run, compress.summary, compress.check,
          runs_on=compress.runs_on),
    Stage("assemble", 1, assemble.key_config, ("compress",), assemble.run, assemble.summary, runs_on=assemble.runs_on),
    Stage("sft", 1, sft.key_config, ("assemble",), sft.run, sft.summary, sft.check, command=sft.command,
          runs_on=sft.runs_on),
    Stage("grpo", 1, grpo.key_config, ("sft", "assemble"), grpo.run, grpo.summary, grpo.check, command=grpo.command,
          runs_on=grpo.runs_on),
    Stage("eval", 3, evaluation.key_config, evaluation.inputs, evaluation.run, evaluation.summary,
          evaluation.check, per_variant=False, runs_on=evaluation.runs_on),
    Stage("report", 2, report.key_config, report.inputs, report.run, report.summary, evaluation.check,
          per_variant=False),
]}  # fmt: skip
ORDER = list(STAGES)


@dataclass(frozen=True)
class Step:
    """One stage for one config (or variant): its key and the steps whose artifacts it reads."""

    label: str  # "grpo", or "grpo@additive" for a variant whose artifact differs from the base config's
    stage: Stage
    config: BardConfig
    key: str
    key_config: dict
    inputs: dict[str, Step]  # as named in the key: "teacher", or "grpo@additive" (eval's models)

    @property
    def name(self) -> str:
        return self.stage.name

    def artifact_dir(self) -> Path:
        return ArtifactStore(self.config.home).artifact_dir(self.name, self.key)

    def manifest(self) -> Manifest | None:
        return ArtifactStore(self.config.home).manifest(self.name, self.key)

    def input_dirs(self) -> dict[str, Path]:
        return {label: source.artifact_dir() for label, source in self.inputs.items()}

    def runs_on(self) -> list[str]:
        """What the step runs on (engines, jobs) and the GPUs it asks for: `--dry-run` prints it."""
        return self.stage.runs_on(self.config, self.input_dirs())


class Plan:
    """The steps of `config`: each stage for the config and for each variant, each key computed once."""

    def __init__(self, config: BardConfig):
        unknown = sorted(set(config.ray.resources) - set(ORDER))
        if unknown:
            raise ConfigError(f"ray.resources: unknown stage {', '.join(unknown)}; stages: {', '.join(ORDER)}")
        self.config = config
        self._steps: dict[tuple[str, str], Step] = {}
        self._variants: dict[str, BardConfig] = {"": config}

    def variant(self, name: str) -> BardConfig:
        if name not in self._variants:
            if name not in self.config.variants:
                raise BardError(f"no variant {name!r} in the config "
                                f"(variants: {', '.join(self.config.variants) or 'none'})")  # fmt: skip
            self._variants[name] = variant_config(self.config, name)
        return self._variants[name]

    def step(self, ref: str) -> Step:
        """`sft`, `grpo@additive` -> its step (a variant that changes nothing for the stage shares the base's)."""
        name, _, variant = ref.partition("@")
        if name not in STAGES:
            raise BardError(f"unknown stage {name}; stages in order: {', '.join(ORDER)}")
        stage = STAGES[name]
        variant = variant if stage.per_variant else ""
        if (name, variant) not in self._steps:
            config = self.variant(variant)
            inputs = {label: self.step(target if "@" in target or not variant else f"{target}@{variant}")
                      for label, target in stage.input_refs(config).items()}  # fmt: skip
            key_config = stage.key_config(config)
            key = artifact_key(name, stage.version, key_config, {label: s.key for label, s in inputs.items()})
            if variant and key == self.step(name).key:
                self._steps[name, variant] = self.step(name)
            else:
                label = f"{name}@{variant}" if variant else name
                self._steps[name, variant] = Step(label, stage, config, key, key_config, inputs)
        return self._steps[name, variant]

    def steps(self, names: list[str]) -> list[Step]:
        """Every step a run of `names` does, in order: each stage for the config, then for each variant whose
        artifact of that stage differs (listed once when it does not)."""
        found: dict[str, Step] = {}
        for name in names:
            for variant in ["", *self.config.variants] if STAGES[name].per_variant else [""]:
                step = self.step(f"{name}@{variant}" if variant else name)
                found.setdefault(step.key, step)
        return list(found.values())


def key(name: str, config: BardConfig) -> str:
    """The key of stage `name` for `config` (a whole plan for one key: for tests and one-off lookups)."""
    return Plan(config).step(name).key


def build_step(step: Step, refresh: bool = False, flow_run_id: str | None = None, on_progress=None) -> Manifest:
    """Build (or reuse, or resume) the artifact of `step` from its finished inputs."""
    step.stage.check(step.config)
    inputs = {}
    for label, source in step.inputs.items():
        inputs[label] = source.manifest()
        if inputs[label] is None:
            raise BardError(f"{step.label}: the {source.label} artifact of this config is not built yet: "
                            f"run `bard run --from {source.name}`")  # fmt: skip

    def make(path: Path) -> tuple[dict[str, int], dict]:
        return step.stage.run(StageRun(step.config, inputs, path, on_progress))

    return build_artifact(step, make, refresh, flow_run_id)


def build(name: str, config: BardConfig, refresh: bool = False, on_progress=None) -> Manifest:
    """Build stage `name` for `config` outside Prefect (tests, benchmarks); its tables become `bard query`'s views."""
    manifest = build_step(Plan(config).step(name), refresh, on_progress=on_progress)
    catalog.register(config.home, manifest)
    return manifest
