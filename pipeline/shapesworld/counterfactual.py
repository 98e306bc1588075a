"""Counterfactual ShapesWorld scenes for FBCIR negatives, planned from scene graphs and verified exactly.

text-aligned: the modification text applied to another scene (not the reference), giving a scene
that is not the target. image-aligned: a scene at most 2 edits from the reference, neither the
reference nor the target, whose edits share none of the requested change's edits.

Pure scene functions: the negatives stage (generators/) mines them from a pool or makes them by an
edit; the ShapesWorld sets (sets/) plan them from the reference alone.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from .annotate import describe_edits
from .edits import apply_edit, diff_all, random_edit
from .parse import apply_text
from .scene import Scene


def edit_keys(edits) -> set[tuple]:
    """Order-free keys of an edit list: each object edit named by its cell in the starting scene."""
    origin: dict = {}
    keys = set()
    for e in edits:
        start = origin.get(e.cell, e.cell) if e.cell is not None else None
        if e.kind == "move":
            origin[e.to] = start
        keys.add((e.kind, start, e.value, e.to, e.obj))
    return keys


def requested_change(ref: Scene, tgt: Scene) -> set[tuple]:
    """Every edit key in any minimal edit list from reference to target."""
    return set().union(*(edit_keys(opt) for opt in diff_all(ref, tgt, max_edits=2))) if ref != tgt else set()


def check_text_aligned(text: str, source: Scene | None, neg: Scene | None, ref: Scene, tgt: Scene) -> str | None:
    """None when ``neg`` is the text applied to ``source`` and differs from target and reference; else why not."""
    if source is None or neg is None:
        return "no_scene"
    if source == ref:
        return "source_is_reference"
    if apply_text(text, source) != neg:
        return "text_not_applied"
    if neg == tgt:
        return "is_target"
    if neg == ref:
        return "is_reference"
    return None


def check_image_aligned(neg: Scene | None, ref: Scene, tgt: Scene, requested: set[tuple] | None = None,
                        max_edits: int = 2) -> str | None:
    """None when ``neg`` is close to the reference and leaves the requested change undone; else why not."""
    if neg is None:
        return "no_scene"
    if neg == ref:
        return "is_reference"
    if neg == tgt:
        return "is_target"
    options = diff_all(ref, neg, max_edits=max_edits)
    if not options:
        return "too_far_from_reference"
    requested = requested_change(ref, tgt) if requested is None else requested
    if any(edit_keys(opt) & requested for opt in options):
        return "contains_requested_change"
    return None


@dataclass
class Plan:
    """A negative found in the pool (``pool_index``) or to be made by an edit of ``source``."""

    scene: Scene | None
    source: Scene | None = None
    pool_index: int | None = None
    source_index: int | None = None
    instruction: str | None = None


def plan_changed_reference(text: str, ref: Scene, tgt: Scene, rng: random.Random | None,
                           tries: int = 30) -> Plan | None:
    """When no pool scene takes the text: the reference with its preserved content changed by one
    random edit, then the text applied (the target with something else different)."""
    if rng is None:
        return None
    for _ in range(tries):
        src = apply_edit(ref, random_edit(ref, rng))
        out = apply_text(text, src)
        if check_text_aligned(text, src, out, ref, tgt) is None:
            return Plan(out, src, instruction=text)
    return None


def plan_image_aligned(ref: Scene, tgt: Scene, pool, candidates: list[int], requested: set[tuple],
                       rng: random.Random, max_edits: int = 2, prefer_mined: bool = True,
                       tries: int = 30) -> Plan | None:
    """The closest verified pool scene (mined), else a random side edit of the reference (edit)."""
    if prefer_mined:
        best = None
        for j in candidates:
            s = pool.scenes[j]
            if s is None or check_image_aligned(s, ref, tgt, requested, max_edits):
                continue
            d = len(diff_all(ref, s, max_edits)[0])
            if best is None or d < best[0]:
                best = (d, j)
                if d == 1:
                    break
        if best is not None:
            return Plan(pool.scenes[best[1]], pool_index=best[1])
    for _ in range(tries):
        e = random_edit(ref, rng)
        neg = apply_edit(ref, e)
        if check_image_aligned(neg, ref, tgt, requested, max_edits) is None:
            return Plan(neg, ref, instruction=describe_edits(ref, [e], rng))
    return None
