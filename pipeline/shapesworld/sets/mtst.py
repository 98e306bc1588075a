"""The MTST generator's ShapesWorld seed sets: annotated (reference, target, text) pairs, captioned scenes.

``SeedSet`` holds unique images and pairs of indices into them; ``shapesworld_seed_set`` draws pairs
from the world, ``shapesworld_family_pairs`` mines them as the demo does (two images of one family),
``shapesworld_captions`` gives image-caption pairs for the captioning stage. Texts are the annotator's.
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field

import numpy as np

from pipeline.seeding import derive_seed
from pipeline.shapesworld import ShapesWorld, annotate, diff, render


@dataclass
class SeedSet:
    """Unique images (uint8, [N, H, W, 3]) and pairs of indices into them with their texts."""

    images: np.ndarray
    pairs: list[tuple[int, int, str, str | None]]  # (ref index, target index, forward text, reverse text)
    scenes: list[str] | None = field(default=None)  # ShapesWorld scene JSON per image (ground truth)

    def __len__(self) -> int:
        return len(self.pairs)

    def texts(self) -> list[str]:
        return [t for _, _, f, r in self.pairs for t in (f, r) if t]

    def fingerprint(self) -> str:
        """sha256 (16 hex) of images and pairs: a training cache key for sets passed in directly."""
        h = hashlib.sha256(np.ascontiguousarray(self.images).tobytes())
        h.update(repr(self.pairs).encode())
        return h.hexdigest()[:16]

    @classmethod
    def random(cls, n_pairs: int, *, image_size: int = 64, seed: int = 0) -> SeedSet:
        """Noise images with texts a model can learn from the mean color (for tests without a world)."""
        rng = np.random.default_rng(seed)
        colors = ("red", "green", "blue")
        images, pairs = [], []
        for _ in range(n_pairs):
            a, b = rng.integers(0, 3, size=2)
            for c in (a, b):
                img = rng.integers(0, 60, size=(image_size, image_size, 3), dtype=np.uint8)
                img[..., c] += 180
                images.append(img)
            i = len(images) - 2
            pairs.append((i, i + 1, f"make it {colors[b]}", f"make it {colors[a]}"))
        return cls(np.stack(images), pairs)


def shapesworld_seed_set(n_pairs: int, *, seed: int, image_size: int = 64, max_edits: int = 1) -> SeedSet:
    """``n_pairs`` ShapesWorld pairs with annotator texts (forward and reverse), from one seed."""
    rng = random.Random(seed)
    world = ShapesWorld(image_size=image_size, seed=seed)
    images, scenes, pairs = [], [], []
    for _ in range(n_pairs):
        ref, tgt = world.sample_pair(rng, n_edits=rng.randint(1, max_edits))
        for s in (ref, tgt):
            images.append(np.asarray(render(s, image_size).convert("RGB"), dtype=np.uint8))
            scenes.append(s.to_json())
        i = len(images) - 2
        pairs.append((i, i + 1, annotate(ref, tgt, rng), annotate(tgt, ref, rng)))
    return SeedSet(np.stack(images), pairs, scenes)


def shapesworld_captions(n_images: int, *, seed: int, image_size: int = 64) -> tuple[np.ndarray, list[str]]:
    """``n_images`` random ShapesWorld scenes ([N, H, W, 3] uint8) with their captions: image-text
    pairs for the generator's captioning stage (no pairs of images, no modification texts)."""
    rng = random.Random(derive_seed(seed, "captions", 0))
    world = ShapesWorld(image_size=image_size, seed=seed)
    scenes = [world.sample_scene(rng) for _ in range(n_images)]
    images = np.stack([np.asarray(render(s, image_size).convert("RGB"), dtype=np.uint8) for s in scenes])
    return images, [s.caption() for s in scenes]


def shapesworld_family_pairs(n_pairs: int, *, seed: int, image_size: int = 64, variants_per_family: int = 4,
                             max_objects: int = 4) -> SeedSet:
    """``n_pairs`` pairs as the demo mines them: two images of one ShapesWorld family (label strategy).

    A family is a base scene and its one-edit variants, so a pair is base -> variant (1 edit) or
    variant -> variant (1 or 2 edits); one direction per unordered pair, drawn at random. Families
    come from ``ShapesWorld(seed=seed).pool()`` until there are enough pairs. Texts are the annotator's.
    """
    rng = random.Random(seed)
    families = max(1, n_pairs // 6 + 1)  # about 9-10 pairs per family of 5; grow if short
    while True:
        world = ShapesWorld(image_size=image_size, families=families, variants_per_family=variants_per_family,
                            max_objects=max_objects, seed=seed)
        groups: dict[str, list] = {}
        for row in world.pool():
            groups.setdefault(row["label"], []).append(row["scene"])
        found = [(a, b) for members in groups.values() for i, a in enumerate(members) for b in members[i + 1:]
                 if diff(a, b) is not None]
        if len(found) >= n_pairs:
            break
        families *= 2
    images, scenes, pairs, index = [], [], [], {}

    def slot(scene) -> int:
        if scene not in index:
            index[scene] = len(images)
            images.append(np.asarray(render(scene, image_size).convert("RGB"), dtype=np.uint8))
            scenes.append(scene.to_json())
        return index[scene]

    for a, b in found[:n_pairs]:
        ref, tgt = (a, b) if rng.random() < 0.5 else (b, a)
        pairs.append((slot(ref), slot(tgt), annotate(ref, tgt, rng), annotate(tgt, ref, rng)))
    return SeedSet(np.stack(images), pairs, scenes)
