"""The base of every config model."""

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """Base of every config section: unknown keys are errors and values never change after loading."""

    model_config = ConfigDict(extra="forbid", frozen=True)
