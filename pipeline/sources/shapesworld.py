"""The embedded ShapesWorld as a source: rendered PNGs with the scene graph as ground truth."""
from __future__ import annotations

from typing import Iterator

from pipeline.shapesworld import ShapesWorld

from .base import Entry, Source, png_bytes


class ShapesWorldSource(Source):
    """The ShapesWorld pool; rows also carry ``scene`` (JSON), label = family, caption = scene caption."""

    kind = "shapesworld"
    dedup_images = False  # rendered scenes: ids are scene hashes, pixels are the world's business

    def __init__(self, image_size: int = 64, families: int = 200, variants_per_family: int = 4,
                 max_objects: int = 4, seed: int = 0):
        super().__init__()
        self.world = ShapesWorld(image_size=image_size, families=families,
                                 variants_per_family=variants_per_family, max_objects=max_objects, seed=seed)

    def entries(self) -> Iterator[Entry]:
        # The pool is small (families x variants) and its ids are hashes: sort it in memory.
        for r in sorted(self.world.pool(), key=lambda r: r["image_id"]):
            yield Entry(r["image_id"], data=png_bytes(self.world.image(r["scene"])), label=r["label"],
                        caption=r["caption"], extra={"scene": r["scene"].to_json()}, verified=True)
