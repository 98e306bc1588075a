"""FBCIR negatives in ShapesWorld: mined or planned from scene graphs, verified exactly.

text-aligned: the modification text applied to another scene (not the reference), giving a scene
that is not the target. image-aligned: a scene at most 2 edits from the reference, neither the
reference nor the target, whose edits share none of the requested change's edits.

The scene planners and their exact checks are pure ShapesWorld and live in
pipeline/shapesworld/counterfactual.py; this module adds the text-aligned planner over a mined pool.
"""
from __future__ import annotations

import random

from pipeline.shapesworld import Scene, apply_text
from pipeline.shapesworld.counterfactual import (Plan, check_image_aligned, check_text_aligned, edit_keys,  # noqa: F401
                                                 plan_changed_reference, plan_image_aligned, requested_change)


def plan_text_aligned(text: str, ref: Scene, tgt: Scene, pool, candidates: list[int], ref_label: str | None,
                      prefer_mined: bool = True, rng: random.Random | None = None) -> Plan | None:
    """A pool scene the text maps onto another pool scene (mined), else the first scene it applies to
    (edit), else a changed reference (edit)."""
    # Another family first: its content differs from the reference beyond the requested change.
    candidates = sorted(candidates, key=lambda j: ref_label is not None and pool.labels[j] == ref_label)
    edit_plan = None
    for j in candidates:
        src = pool.scenes[j]
        if src is None or src == ref:
            continue
        out = apply_text(text, src)
        if out is None or out in (tgt, ref):
            continue
        k = pool.scene_index.get(out)
        if k is not None and prefer_mined:
            return Plan(out, src, pool_index=k, source_index=j)
        if edit_plan is None:
            edit_plan = Plan(out, src, source_index=j, instruction=text)
            if not prefer_mined:
                return edit_plan
    return edit_plan or plan_changed_reference(text, ref, tgt, rng)
