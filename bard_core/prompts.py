"""Prompt templates: named fields filled in one pass, every other brace left as it is (so `\\boxed{}` needs
no escaping), and the chat turns a generation request carries."""

from __future__ import annotations

import re


def fill(template: str, **values: object) -> str:
    """Replace `{name}` for each given name. One pass: text inserted for one field is never re-read,
    so a question that itself contains "{budget}" stays intact."""
    pattern = re.compile(r"\{(" + "|".join(map(re.escape, values)) + r")\}")
    return pattern.sub(lambda m: str(values[m.group(1)]), template)


def chat(user: str, system: str | None = None) -> list[dict[str, str]]:
    turns = [{"role": "system", "content": system}] if system else []
    return turns + [{"role": "user", "content": user}]
