"""The base of every config section and the one loader every config goes through.

Unknown keys are errors, assignments are validated; a bad file, key or value is a ``ConfigError``
of one line that names it.
"""
from __future__ import annotations

import typing
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

S = typing.TypeVar("S", bound=BaseModel)


class Section(BaseModel):
    """Base of every config section in the project (run, MTST, filters, trainers, nightly, reproduction)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ConfigError(ValueError):
    """A config that cannot be used; the message is one line that names the key and the fix."""


class ConfigFileNotFound(ConfigError, FileNotFoundError):
    """The config file named does not exist (both a ConfigError and a FileNotFoundError)."""


S = TypeVar("S", bound=BaseModel)


def read_yaml(path: str | Path, what: str = "config") -> dict:
    """The mapping in a YAML file; a missing file, bad YAML or a non-mapping is a one-line ConfigError."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigFileNotFound(f"{what} file {str(path)!r} not found: pass an existing YAML file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(data).__name__}")
    return data


def validate_section(model: type[S], data: dict, source: str) -> S:
    """``model`` validated from ``data``; the first error as a one-line ConfigError naming the key."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source, model)) from None


def load_section(model: type[S], path: str | Path | None = None, overrides: dict | None = None, *,
                 what: str = "config", under: tuple[str, ...] = (), defaults: bool = False) -> S:
    """Load ``model`` from a YAML file (or from nothing: its defaults), then ``--set`` overrides.

    ``under``: dotted keys tried in order when the section may sit inside a larger file (the first
    present is used, e.g. ``("generator.mtst", "mtst")``); ``defaults``: merge the file over the
    model's defaults first (for sections with nested defaults a partial file keeps).
    """
    data = read_yaml(path, what) if path is not None else {}
    source = (str(path) if what == "config" else f"{what} {path}") if path is not None else f"{what} (defaults)"
    for dotted in under:
        node = data
        for part in dotted.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            data, source = node, f"{source} ({dotted})"
            break
    if defaults:
        data = deep_merge(model().model_dump(mode="json"), data)
    return validate_section(model, set_dotted(data, overrides), source)


def deep_merge(base: dict, extra: dict) -> dict:
    """``base`` updated key by key from ``extra``; nested mappings merge, anything else replaces."""
    out = dict(base)
    for k, v in extra.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def set_dotted(data: dict, overrides: dict | None) -> dict:
    """Apply ``{"a.b.c": value}`` overrides to ``data`` in place (a missing or non-mapping parent
    becomes a mapping, e.g. a section that is null by default); returns ``data``."""
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, leaf = dotted.split(".")
        for p in parents:
            if not isinstance(node.get(p), dict):
                node[p] = {}
            node = node[p]
        node[leaf] = value
    return data


def parse_overrides(items: list[str], example: str = "seed=3") -> dict:
    """``--set KEY=VALUE`` items as ``{"KEY": value}``, each value parsed as YAML (``3`` is an int)."""
    import yaml

    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE, e.g. --set {example}")
        k, v = item.split("=", 1)
        out[k.strip()] = yaml.safe_load(v)
    return out


def format_validation_error(err: ValidationError, source: str, root: type[BaseModel]) -> str:
    """The first error of a config validation as one line that names the key (and, for an unknown
    key, the keys allowed there); ``root`` is the model that was validated."""
    e = err.errors()[0]
    key = ".".join(str(p) for p in e["loc"]) or "(top level)"
    kind = e["type"]
    if kind == "extra_forbidden":
        msg = f"unknown key {key!r}"
        parent = _section_for(root, e["loc"][:-1])
        if parent is not None:
            msg += f"; allowed here: {', '.join(sorted(parent.model_fields))}"
    elif kind == "missing":
        msg = f"missing key {key!r}"
    elif not e["loc"] or isinstance(e.get("input"), dict):  # a section's own check: its message says it
        msg = e["msg"].removeprefix("Value error, ") + ("" if not e["loc"] else f" (in {key!r})")
    else:
        msg = f"bad value for {key!r}: {e.get('input')!r} ({e['msg']})"
    more = f" (+{len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    return f"{source}: {msg}{more}"


def _section_for(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The section at ``loc`` under ``model`` (through ``X | None`` fields), or None."""
    for part in loc:
        field = model.model_fields.get(str(part))
        kinds = (field.annotation, *typing.get_args(field.annotation)) if field is not None else ()
        found = [k for k in kinds if isinstance(k, type) and issubclass(k, BaseModel)]
        if not found:
            return None
        model = found[0]
    return model
