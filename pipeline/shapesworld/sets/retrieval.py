"""ShapesWorld triplet sets with exact FBCIR negatives: the annotated seed set and held-out benchmarks.

Every row uses the shard column names (trainers.data reads them as it reads shards). Texts come from the
ShapesWorld annotator (the ground truth), negatives from the scene-graph planners of
pipeline.shapesworld.counterfactual and are checked exactly there:

- text-aligned: the modification text applied to the reference with its preserved content changed
  (the text is satisfied, the reference is not kept);
- image-aligned: one side edit of the reference that leaves the requested change undone.

A benchmark is drawn from its own seed and refuses any scene listed in ``exclude`` (the scenes of the
training data, e.g. trainers.data.training_images), so no query, target or negative image was seen in
training.
"""
from __future__ import annotations

import hashlib
import random
from typing import Iterable, Iterator

from pipeline.schema import triplet_id
from pipeline.seeding import derive_seed
from pipeline.shapesworld import ShapesWorld, Scene, annotate, apply_edit, diff, random_edit, render, scene_id
from pipeline.shapesworld import counterfactual as neg
from pipeline.sources.base import png_bytes

GENERATOR = "shapesworld-annotator"


def image_id(scene: Scene) -> str:
    """The pool id ShapesWorld sources give a scene (``sw-<scene hash>``), so sets and shards compare."""
    return f"sw-{scene_id(scene)}"


def image_digest(struct: dict) -> str:
    """sha256 (24 hex) of an image struct's bytes: renders are deterministic, so one scene = one digest."""
    return hashlib.sha256(struct["bytes"]).hexdigest()[:24]


class Seen:
    """The images training used, by id and by image digest (shard negatives carry no scene id)."""

    def __init__(self, ids: Iterable[str] = (), digests: Iterable[str] = (), image_size: int = 64):
        self.ids, self.digests, self.size = set(ids), set(digests), image_size

    def __contains__(self, scene: Scene) -> bool:
        if image_id(scene) in self.ids:
            return True
        return bool(self.digests) and image_digest({"bytes": png_bytes(render(scene, self.size))}) in self.digests

    def __len__(self) -> int:
        return len(self.ids) + len(self.digests)


def _targets(world: ShapesWorld, ref: Scene, n: int, max_edits: int, rng: random.Random,
             banned: Seen) -> list[Scene]:
    out: list[Scene] = []
    for _ in range(50 * n):
        if len(out) == n:
            break
        k = rng.randint(1, max_edits)
        tgt = ref
        for _ in range(k):
            tgt = apply_edit(tgt, random_edit(tgt, rng, world.max_objects))
        d = diff(ref, tgt)
        if d is None or len(d) != k or tgt in out or tgt in banned:
            continue
        out.append(tgt)
    return out


def _negatives(text: str, ref: Scene, tgt: Scene, rng: random.Random, banned: Seen) -> tuple[Scene | None, Scene | None]:
    """(text-aligned, image-aligned) negative scenes, each verified exactly; None when none was found."""
    ta = neg.plan_changed_reference(text, ref, tgt, rng)
    ta_scene = ta.scene if ta is not None and ta.scene not in banned else None
    if ta_scene is not None:
        assert neg.check_text_aligned(text, ta.source, ta_scene, ref, tgt) is None
    requested = neg.requested_change(ref, tgt)
    ia = neg.plan_image_aligned(ref, tgt, None, [], requested, rng, prefer_mined=False)
    ia_scene = ia.scene if ia is not None and ia.scene not in banned else None
    if ia_scene is not None:
        assert neg.check_image_aligned(ia_scene, ref, tgt, requested) is None
    return ta_scene, ia_scene


def shapesworld_triplets(n_references: int, targets_per_reference: int = 1, *, seed: int, image_size: int = 64,
                         max_edits: int = 2, max_objects: int = 4, negatives: bool = True,
                         require_negatives: bool = False, exclude: Seen | None = None,
                         split: str = "train") -> list[dict]:
    """``n_references`` reference scenes, each with ``targets_per_reference`` targets 1..``max_edits`` edits
    away, annotator texts both ways and (optionally) both FBCIR negatives, as shard-style rows.

    ``exclude``: images (by id or digest) no reference, target or negative may be. ``require_negatives``:
    a reference whose targets do not all get both negatives is drawn again (benchmarks: full hard galleries).
    """
    if n_references < 1 or targets_per_reference < 1:
        raise ValueError(f"need n_references >= 1 and targets_per_reference >= 1, got {n_references}, "
                         f"{targets_per_reference}")
    banned = exclude if exclude is not None else Seen(image_size=image_size)
    world = ShapesWorld(image_size=image_size, max_objects=max_objects, seed=seed)
    rows: list[dict] = []
    used: set[str] = set()  # reference ids already drawn: each reference heads one group
    for i in range(n_references):
        rng = random.Random(derive_seed(seed, "triplet-set", i))
        for _attempt in range(100):
            ref = world.sample_scene(rng)
            if ref in banned or image_id(ref) in used:
                continue
            group = list(_group(world, ref, targets_per_reference, max_edits, rng, banned, negatives))
            if len(group) < targets_per_reference:
                continue
            if require_negatives and not all(g[2] is not None and g[3] is not None for g in group):
                continue
            break
        else:
            raise RuntimeError(f"ShapesWorld seed {seed}: no reference #{i} with {targets_per_reference} "
                               "usable targets in 100 draws; lower targets_per_reference or shrink exclude")
        used.add(image_id(ref))
        rows.extend(_rows(ref, group, image_size, split))
    return rows


def _group(world, ref, n, max_edits, rng, banned, negatives) -> Iterator[tuple]:
    for tgt in _targets(world, ref, n, max_edits, rng, banned):
        text, back = annotate(ref, tgt, rng), annotate(tgt, ref, rng)
        if not text:
            continue
        ta, ia = _negatives(text, ref, tgt, rng, banned) if negatives else (None, None)
        yield tgt, text, ta, ia, back


def _rows(ref: Scene, group: list[tuple], size: int, split: str) -> Iterator[dict]:
    def struct(scene):
        return None if scene is None else {"bytes": png_bytes(render(scene, size)), "path": None}

    ref_image = struct(ref)
    for tgt, text, ta, ia, back in group:
        rid, tid = image_id(ref), image_id(tgt)
        yield {
            "triplet_id": triplet_id(rid, tid, GENERATOR),
            "reference_id": rid, "target_id": tid,
            "reference_image": ref_image, "target_image": struct(tgt),
            "modification_text": text, "reverse_text": back,
            "neg_text_aligned_image": struct(ta), "neg_image_aligned_image": struct(ia),
            "neg_text_aligned_id": None if ta is None else image_id(ta),
            "neg_image_aligned_id": None if ia is None else image_id(ia),
            "reference_scene": ref.to_json(), "target_scene": tgt.to_json(),
            "split": split, "mining": "seed", "generator": GENERATOR,
        }


def row_image_ids(rows: Iterable[dict]) -> set[str]:
    """Every image id a set of rows shows (references, targets, negatives)."""
    keys = ("reference_id", "target_id", "neg_text_aligned_id", "neg_image_aligned_id")
    return {r[k] for r in rows for k in keys if r.get(k)}

