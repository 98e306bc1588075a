"""The base of every config section: unknown keys are errors, assignments are validated."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict


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
