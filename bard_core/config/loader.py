"""Reading a profile: YAML files (and `extends`), `--set key=value` overrides, and readable validation errors."""

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from bard_core.errors import BardError

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"


class ConfigError(BardError):
    pass


def parse_override(item: str) -> tuple[list[str], Any]:
    """`a.b.c=value` -> (["a", "b", "c"], value parsed as YAML, so lists and objects work)."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {item!r}: expected key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except (yaml.YAMLError, ValueError, RecursionError) as err:  # ValueError: an integer of over 4300 digits
        raise ConfigError(f"--set {item!r}: the value is not valid YAML/JSON: {err}") from None
    return key.strip().split("."), value


def apply_override(data: dict, path: list[str], value: Any) -> None:
    node = data
    for i, part in enumerate(path[:-1]):
        child = node.get(part) if isinstance(node, dict) else None
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"--set {'.'.join(path)}: {'.'.join(path[: i + 1])} is not a section")
        node = child
    node[path[-1]] = value


def format_validation_error(err: ValidationError, origin: str) -> str:
    lines = [f"invalid config ({origin}):"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key")
        else:
            got = e.get("input")
            got_text = "" if isinstance(got, dict) else f" (got {got!r})"
            lines.append(f"  {key}: {e['msg'].removeprefix('Value error, ')}{got_text}")
    return "\n".join(lines)


def _read_text(path: Path, seen: tuple[Path, ...]) -> str:
    """A config file's text, read as UTF-8 (with or without a byte-order mark), or one ConfigError naming the file."""
    extended = f" (extended by {seen[-1]})" if seen else ""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}{extended}") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a config file{extended}: name a YAML file") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the config file{extended}: {err.strerror}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ConfigError(f"{path}: not UTF-8 text (line {line}, byte {err.start}): save the file as UTF-8") from None


def _parse_yaml(path: Path, text: str) -> Any:
    """The YAML document, or one ConfigError naming the file, and the line and column where YAML gives them."""
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as err:
        mark, context = err.problem_mark, f" ({err.context})" if err.context else ""
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: not valid YAML: {err.problem}{context}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(err).split())}") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid YAML: nested too deeply") from None
    except ValueError as err:  # Python's guard on integer size: "Exceeds the limit (4300 digits) for integer ..."
        raise ConfigError(f"{path}: not valid YAML: {str(err).split(';')[0]}") from None


def read_profile(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    """A YAML profile as a mapping. `extends: other.yaml` (relative to this file) starts from that profile:
    sections are merged key by key, and any other value (a list, a number) is replaced whole."""
    data = _parse_yaml(path, _read_text(path, seen))
    if data is None:  # an empty file: every default
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, not a {type(data).__name__}")
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise ConfigError(f"{path}: extends: expected the file name of another profile, got {parent!r}")
    parent_path = (path.parent / str(parent)).resolve()
    if parent_path in seen or parent_path == path.resolve():
        raise ConfigError(f"{path}: extends {parent} goes round in a circle")
    return _merge(read_profile(parent_path, (*seen, path.resolve())), data)


def _merge(base: dict, over: dict) -> dict:
    merged = dict(base)
    for key, value in over.items():
        both_sections = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = _merge(merged[key], value) if both_sections else value
    return merged


def dump_config(config: BaseModel) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
