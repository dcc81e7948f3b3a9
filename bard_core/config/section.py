"""The base of every config model."""

from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator


class Section(BaseModel):
    """Base of every config section: unknown keys are errors and values never change after loading."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _partial_sections_keep_their_defaults(cls, data: Any) -> Any:
        """A sub-section given in part keeps the defaults of the rest: `teacher.sampling: {max_tokens: 400}` keeps
        the teacher's default n = 4. (pydantic replaces a default object whole, so the rest would fall back to the
        sub-section class's own defaults: SamplingParams' n = 1.)"""
        if not isinstance(data, dict):
            return data
        merged = dict(data)
        for name, field in cls.model_fields.items():
            default = field.get_default(call_default_factory=True)
            if isinstance(data.get(name), dict) and isinstance(default, Section) and field.annotation is type(default):
                merged[name] = _deep_merge(default.model_dump(), data[name])
        return merged


def _deep_merge(base: dict, given: dict) -> dict:
    out = dict(base)
    for key, value in given.items():
        out[key] = _deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out
