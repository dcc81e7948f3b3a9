"""Which stages a run does: `--stages`, `--from`, `--refresh` and the default (every stage the config can run),
in the order of the stage graph (`tasks/graph.py`)."""

from __future__ import annotations

from bard_core.config import BardConfig
from bard_core.errors import BardError
from tasks.graph import ORDER


def select(stages: str | list[str] | None = None, start: str | None = None) -> list[str]:
    """`--stages a,b` (or a list) or `--from S` -> the stage names to run, in pipeline order."""
    if stages and start:
        raise BardError("give --stages or --from, not both")
    if isinstance(stages, str):
        stages = [s.strip() for s in stages.split(",") if s.strip()]
    names = list(stages) if stages else after(start) if start else ORDER
    _check(names)
    return [n for n in ORDER if n in names]


def _check(names: list[str]) -> None:
    unknown = [n for n in names if n not in ORDER]
    if unknown:
        raise BardError(f"unknown stage {', '.join(unknown)}; stages in order: {', '.join(ORDER)}")


def after(stage: str) -> list[str]:
    """`stage` and every stage that follows it (what --refresh recomputes)."""
    _check([stage])
    return ORDER[ORDER.index(stage):]


def default_stages(config: BardConfig) -> tuple[list[str], str | None]:
    """What `bard run` with no stage options runs: the stages in order, up to the first whose engine the config
    leaves unset (a profile may stop before generation), and why it stopped there."""
    for i, name in enumerate(ORDER):
        section = getattr(config, name, None)
        if section is not None and getattr(section, "generation", "") is None:
            return ORDER[:i], f"stopping before {name}: {name}.generation is not set in this config"
    return list(ORDER), None


def resolve(config: BardConfig, stages: str | list[str] | None, start: str | None) -> tuple[list[str], str | None]:
    """The stages a run does: those named, or from `start` on, or by default every stage the config can run."""
    if stages or start:
        return select(stages, start), None
    return default_stages(config)


def refreshed(names: list[str], refresh: list[str]) -> list[str]:
    """Of `names`, those `--refresh S` recomputes: S and every stage after it."""
    marked = {n for r in refresh for n in after(r)}
    return [n for n in names if n in marked]
