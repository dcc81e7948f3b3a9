"""The base of every config model, in its own module so that stage configs (e.g. generation) can be
imported by `bard_core.config` without a cycle."""

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """Base of every config section: unknown keys are errors and values never change after loading."""

    model_config = ConfigDict(extra="forbid", frozen=True)
