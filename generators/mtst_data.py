"""Annotated (reference, target, text) seed sets for the MTST generator: ShapesWorld or random."""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field

import numpy as np


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
    from pipeline.shapesworld import ShapesWorld, annotate, render

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
