"""The filters' evaluation set: ShapesWorld triplets with annotator texts and known bad texts injected.

Real rows carry annotator texts (correct by construction); ``inject`` gives a known share a bad forward
text: a wrong attribute value, the right change on the wrong object, the reverse text as forward
(swapped direction), or another pair's text (random). ``filters.evaluate_filters`` runs the filter
chain over them and counts what it catches.
"""
from __future__ import annotations

import random
from dataclasses import replace

from pipeline.seeding import derive_seed
from pipeline.shapesworld import (COLORS, SETTINGS, SHAPES, SIZES, Scene, ShapesWorld, annotate, apply_text,
                                  describe_edits, diff, render, scene_id)
from pipeline.sources.base import png_bytes

BAD_KINDS = ("wrong_attribute", "wrong_object", "swapped_direction", "random_text")


def make_rows(n: int, seed: int = 0, image_size: int = 32) -> list[dict]:
    """n ShapesWorld triplets (1 or 2 edits apart) with annotator forward and reverse texts."""
    world = ShapesWorld(image_size=image_size, seed=seed)
    rows = []
    for i in range(n):
        rng = random.Random(derive_seed(seed, "eval-pair", i))
        ref, tgt = world.sample_pair(rng, n_edits=1 + (rng.random() < 0.3))
        rows.append({
            "triplet_id": f"eval-{i}", "reference_id": f"sw-{scene_id(ref)}", "target_id": f"sw-{scene_id(tgt)}",
            "reference_scene": ref.to_json(), "target_scene": tgt.to_json(),
            "reference_image": {"bytes": png_bytes(render(ref, image_size)), "path": None},
            "target_image": {"bytes": png_bytes(render(tgt, image_size)), "path": None},
            "modification_text": annotate(ref, tgt, rng), "reverse_text": annotate(tgt, ref, rng), "scores": {},
        })
    return rows


def wrong_edit(kind: str, ref, edits, rng: random.Random):
    """The true edits with one changed: another value (wrong_attribute) or another object (wrong_object)."""
    k = rng.randrange(len(edits))
    e = edits[k]
    if kind == "wrong_attribute":
        values = {"color": COLORS, "shape": SHAPES, "size": SIZES, "setting": SETTINGS}
        if e.kind in values:
            new = replace(e, value=rng.choice([v for v in values[e.kind] if v != e.value]))
        elif e.kind == "move":
            new = replace(e, to=rng.choice([c for c in ref.empty_cells() if c != e.to] or [e.to]))
        elif e.kind == "add":
            new = replace(e, obj=replace(e.obj, color=rng.choice([c for c in COLORS if c != e.obj.color])))
        else:
            return None
    else:
        if e.cell is None:
            return None
        others = [o.cell for o in ref.objects if o.cell != e.cell]
        if not others:
            return None
        new = replace(e, cell=rng.choice(others))
    return edits[:k] + [new] + edits[k + 1:]


def corrupt(row: dict, kind: str, rng: random.Random, texts: list[str]) -> str | None:
    """A bad forward text of the given kind for the row, or None when that kind cannot be made."""
    ref, tgt = Scene.from_json(row["reference_scene"]), Scene.from_json(row["target_scene"])
    if kind == "swapped_direction":
        text = row["reverse_text"]
    elif kind == "random_text":
        text = rng.choice(texts)
    else:
        edits = wrong_edit(kind, ref, diff(ref, tgt), rng)
        if edits is None:
            return None
        try:
            text = describe_edits(ref, edits, rng)
        except (ValueError, AttributeError, IndexError):
            return None  # the altered edit does not apply to this scene (e.g. a taken cell)
    # Known truth: a text that still turns the reference into the target is not bad.
    return None if text is None or apply_text(text, ref) == tgt else text


def inject(rows: list[dict], bad_rate: float, seed: int) -> list[str | None]:
    """Corrupt about bad_rate of the rows in place; returns each row's bad kind (None = good)."""
    texts = [r["modification_text"] for r in rows]
    kinds = []
    for i, row in enumerate(rows):
        rng = random.Random(derive_seed(seed, "inject", i))
        kind = None
        if rng.random() < bad_rate:
            for k in rng.sample(BAD_KINDS, len(BAD_KINDS)):
                text = corrupt(row, k, rng, texts)
                if text is not None:
                    row["modification_text"], kind = text, k
                    break
        kinds.append(kind)
    return kinds
