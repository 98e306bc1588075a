"""Renders the config reference (docs/config.md) from the pydantic models: one source of truth."""
from __future__ import annotations

import typing

from pydantic import BaseModel

HEADER = """# Config reference

Generated from the pydantic models in `pipeline/config.py` by `cirforge config-reference`
(a test fails when this page and the models disagree). A run config is YAML; every key is
optional; unknown keys are errors that name the key and the keys allowed beside it.

"""


def _type_name(ann) -> str:
    origin = typing.get_origin(ann)
    if origin is typing.Literal:
        return " \\| ".join(repr(a) for a in typing.get_args(ann))
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " \\| ".join(_type_name(a) for a in typing.get_args(ann))
    return getattr(ann, "__name__", str(ann)).replace("NoneType", "null")


def _rows(model: type[BaseModel], prefix: str, sections: list) -> list[str]:
    rows = []
    for name, f in model.model_fields.items():
        key = f"{prefix}{name}"
        ann = f.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            sections.append((key, ann))
            continue
        default = f.default if f.default is not None else "null"
        rows.append(f"| `{key}` | {_type_name(ann)} | `{default}` | {f.description or ''} |")
    return rows


def render() -> str:
    from pipeline.job.config import RunConfig

    out = [HEADER]
    sections: list = [("", RunConfig)]
    while sections:
        key, model = sections.pop(0)
        title = key or "top level"
        doc = (model.__doc__ or "").strip().splitlines()[0] if model.__doc__ else ""
        out.append(f"## `{title}`\n\n{doc}\n\n| key | type | default | meaning |\n|---|---|---|---|")
        out.extend(_rows(model, f"{key}." if key else "", sections))
        out.append("")
    return "\n".join(out)
