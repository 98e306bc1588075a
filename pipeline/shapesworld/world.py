"""ShapesWorld as an image source: random scenes, a deterministic pool of families, and pairs.

Every random draw comes from a local random.Random seeded with derive_seed(seed, what, index)
(pipeline/seeding.py), so the pool and its ids depend only on the parameters, never on global
state or on call order.
"""
from __future__ import annotations

import random
from typing import Iterator

from PIL import Image

from ..seeding import derive_seed
from .edits import apply_edit, diff, random_edit
from .render import render
from .scene import CELLS, COLORS, SETTINGS, SHAPES, SIZES, Obj, Scene, scene_id


class ShapesWorld:
    """The embedded procedural world; parameters match pipeline.config.ShapesWorldConfig plus a seed."""

    def __init__(self, image_size: int = 64, families: int = 200, variants_per_family: int = 4,
                 max_objects: int = 4, seed: int = 0):
        if not 1 <= max_objects <= len(CELLS):
            raise ValueError(f"max_objects={max_objects} must be between 1 and {len(CELLS)}")
        if families < 1 or variants_per_family < 0 or image_size < 16:
            raise ValueError("need families >= 1, variants_per_family >= 0 and image_size >= 16")
        self.image_size = image_size
        self.families = families
        self.variants_per_family = variants_per_family
        self.max_objects = max_objects
        self.seed = seed

    @classmethod
    def from_config(cls, config, seed: int = 0) -> ShapesWorld:
        """Build from a ShapesWorldConfig (or anything with its four fields) and a run seed."""
        return cls(image_size=config.image_size, families=config.families,
                   variants_per_family=config.variants_per_family, max_objects=config.max_objects, seed=seed)

    def sample_scene(self, rng: random.Random) -> Scene:
        """A random scene: a setting and 1..max_objects objects with unique (color, shape)."""
        n = rng.randint(1, self.max_objects)
        cells = rng.sample(CELLS, n)
        kinds = rng.sample([(c, s) for c in COLORS for s in SHAPES], n)
        objs = tuple(Obj(shape, color, rng.choice(SIZES), *cell) for cell, (color, shape) in zip(cells, kinds))
        return Scene(rng.choice(SETTINGS), objs)

    def pool(self) -> Iterator[dict]:
        """The image pool: per family a base scene and up to variants_per_family one-edit variants.

        Yields {"image_id", "scene", "label", "caption"}; a scene seen before anywhere in the
        pool is skipped, so ids are unique and any two images of a family are <= 2 edits apart.
        """
        seen: set[Scene] = set()
        for family in range(self.families):
            rng = random.Random(derive_seed(self.seed, "family", family))
            base = self.sample_scene(rng)
            while base in seen:
                base = self.sample_scene(rng)
            members = [base]
            # A scene with few edit options may not have enough distinct variants: cap the tries.
            for _ in range(20 * self.variants_per_family):
                if len(members) > self.variants_per_family:
                    break
                variant = apply_edit(base, random_edit(base, rng, self.max_objects))
                if variant not in seen and variant not in members:
                    members.append(variant)
            for scene in members:
                seen.add(scene)
                yield {"image_id": f"sw-{scene_id(scene)}", "scene": scene, "label": str(family),
                       "caption": scene.caption()}

    def sample_pair(self, rng: random.Random, n_edits: int = 1) -> tuple[Scene, Scene]:
        """(reference, target) scenes exactly n_edits (1 or 2) edits apart, checked with diff."""
        if n_edits not in (1, 2):
            raise ValueError(f"n_edits={n_edits}: pairs are 1 or 2 edits apart")
        while True:
            ref = self.sample_scene(rng)
            tgt = ref
            for _ in range(n_edits):
                tgt = apply_edit(tgt, random_edit(tgt, rng, self.max_objects))
            # Two random edits can undo or merge into one (red -> blue -> green): draw again.
            d = diff(ref, tgt)
            if d is not None and len(d) == n_edits:
                return ref, tgt

    def image(self, scene: Scene) -> Image.Image:
        """The scene rendered at this world's image_size."""
        return render(scene, self.image_size)
