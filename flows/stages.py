"""The pipeline's stages in order, and which of them are built so far."""

from __future__ import annotations

from types import ModuleType

from bard_core.config import STAGES, BardConfig, variant_config
from bard_core.errors import BardError
from tasks import assemble, compress, grpo, problems, report, sft, teacher
from tasks import eval as evaluation

ORDER = list(STAGES)
# Stage name -> its tasks module (with `key(config)`, `build(config, ...)` and the Prefect task).
BUILT: dict[str, ModuleType] = {"problems": problems, "teacher": teacher, "compress": compress, "assemble": assemble,
                                 "sft": sft, "grpo": grpo, "eval": evaluation, "report": report}


# A variant (config `variants`) makes its own data and models; the evaluation and the report are the base config's.
VARIANT_STAGES = ORDER[: ORDER.index("eval")]


def plan(config: BardConfig, names: list[str]) -> list[tuple[str, str, BardConfig]]:
    """(label, stage, config) of every stage run, in order: each stage for this config, then for each variant
    whose artifact of that stage differs (label `grpo@additive`); a variant that leaves a stage unchanged shares
    this config's artifact, so it is listed once."""
    configs = [("", config)] + [(f"@{name}", variant_config(config, name)) for name in config.variants]
    steps, seen = [], set()
    for name in names:
        for suffix, cfg in configs if name in VARIANT_STAGES else configs[:1]:
            key = BUILT[name].key(cfg)
            if key not in seen:
                seen.add(key)
                steps.append((name + suffix, name, cfg))
    return steps


def select(stages: str | list[str] | None = None, start: str | None = None) -> list[str]:
    """`--stages a,b` (or a list) or `--from S` -> the stage names to run, in pipeline order."""
    if stages and start:
        raise BardError("give --stages or --from, not both")
    if isinstance(stages, str):
        stages = [s.strip() for s in stages.split(",") if s.strip()]
    if stages:
        names = list(stages)
    elif start:
        _check([start])
        names = ORDER[ORDER.index(start):]
        names = [n for n in names if n in BUILT]
    else:
        names = [n for n in ORDER if n in BUILT]
    _check(names)
    missing = [n for n in names if n not in BUILT]
    if missing:
        raise BardError(f"stage {', '.join(missing)} is not built yet; built stages: {', '.join(BUILT)}")
    return [n for n in ORDER if n in names]


def _check(names: list[str]) -> None:
    unknown = [n for n in names if n not in ORDER]
    if unknown:
        raise BardError(f"unknown stage {', '.join(unknown)}; stages in order: {', '.join(ORDER)}")


def after(stage: str) -> list[str]:
    """`stage` and every stage that follows it (what --refresh recomputes)."""
    _check([stage])
    return ORDER[ORDER.index(stage):]


def default_stages(config) -> tuple[list[str], str | None]:
    """What `bard run` with no stage options runs: the built stages in order, up to the first whose engine
    the config leaves unset (a profile may stop before generation), and why it stopped there."""
    names = select()
    for i, name in enumerate(names):
        section = getattr(config, name, None)
        if section is not None and getattr(section, "generation", "") is None:
            return names[:i], f"stopping before {name}: {name}.generation is not set in this config"
    return names, None


def resolve(config: BardConfig, stages: str | list[str] | None, start: str | None) -> tuple[list[str], str | None]:
    """The stages a run does: those named, or from `start` on, or by default every stage the config can run."""
    if stages or start:
        return select(stages, start), None
    return default_stages(config)


def refreshed(names: list[str], refresh: list[str]) -> list[str]:
    """Of `names`, those `--refresh S` recomputes: S and every stage after it."""
    marked = {n for r in refresh for n in after(r)}
    return [n for n in names if n in marked]
