"""The base of every config section: unknown keys are errors, assignments are validated."""
from __future__ import annotations

import typing
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

S = typing.TypeVar("S", bound=BaseModel)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


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


def load_section(model: type[S], path: str | Path | None = None, overrides: dict | None = None, *,
                 source: str, merge_defaults: bool = False) -> S:
    """A config section from a YAML file of its keys (no file: the defaults), then ``overrides``
    (dotted keys, e.g. ``{"pretrain.optim.lr": 1e-3}``).

    ``merge_defaults``: the file is merged key by key over the defaults' dump, so a nested section
    given in part keeps the defaults the section itself sets (where they differ from its type's).
    ``source`` names the config in errors ("nightly config"). A missing file is a FileNotFoundError;
    bad YAML, a bad key or a bad value a ValueError of one line that names it.
    """
    import yaml

    where = f"{source} {path or '(defaults)'}"
    if path and not Path(path).is_file():
        raise FileNotFoundError(f"{source} {str(path)!r} not found: pass an existing YAML file or none")
    data: typing.Any = {}
    if path:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except yaml.YAMLError as err:
            raise ValueError(f"{where}: not valid YAML: {str(err).splitlines()[0]}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{where}: the top level must be a mapping of keys, got {type(data).__name__}")
    if merge_defaults:
        data = deep_merge(model().model_dump(mode="json"), data)
    try:
        return model.model_validate(set_dotted(data, overrides))
    except ValidationError as err:  # one line that names the key
        raise ValueError(format_validation_error(err, where, model)) from None


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
