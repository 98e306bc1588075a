"""The candidate pool the negatives stage mines from: one Parquet file the driver writes once.

Columns: image_id, image (HF Image struct), label, scene (ShapesWorld JSON or null), embedding
(list<float32> or null). Stages read it by path in their constructor; they never reach back
into the driver's memory (on a Ray cluster, put it on storage every worker can read).
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.schema import IMAGE_STRUCT

POOL_SCHEMA = pa.schema([("image_id", pa.string()), ("image", IMAGE_STRUCT), ("label", pa.string()),
                         ("scene", pa.string()), ("embedding", pa.list_(pa.float32()))])


def write_pool(path: str | Path, rows: Iterable[dict], embeddings: dict[str, np.ndarray] | None = None) -> Path:
    """Write pool rows (``image_id``, ``image``, optional ``label``/``scene``) and embeddings by id."""
    return write_pool_batches(path, [sorted(rows, key=lambda r: r["image_id"])], embeddings)


def write_pool_batches(path: str | Path, batches: Iterable[list[dict]],
                       embeddings: dict[str, np.ndarray] | None = None) -> Path:
    """``write_pool`` from batches of rows already in id order, written as they come (a pool
    larger than memory streams through)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with pq.ParquetWriter(tmp, POOL_SCHEMA) as w:
        for rows in batches:
            scene = [r.get("scene") for r in rows]
            scene = [s if s is None or isinstance(s, str) else s.to_json() for s in scene]
            emb = [None if embeddings is None or r["image_id"] not in embeddings
                   else np.asarray(embeddings[r["image_id"]], np.float32).tolist() for r in rows]
            w.write_table(pa.table({"image_id": [r["image_id"] for r in rows], "image": [r["image"] for r in rows],
                                    "label": [None if r.get("label") is None else str(r["label"]) for r in rows],
                                    "scene": scene, "embedding": emb}, schema=POOL_SCHEMA), row_group_size=256)
    tmp.replace(path)
    return path


@dataclass
class CandidatePool:
    """The pool in memory: ids, images, labels, parsed scenes (with an index) and embeddings."""

    ids: list[str]
    images: list[dict]
    labels: list[str | None]
    scenes: list  # Scene | None
    embeddings: np.ndarray | None = None  # [N, D], L2-normalized, or None
    scene_index: dict = field(default_factory=dict)
    id_index: dict = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path) -> CandidatePool:
        from pipeline.shapesworld import Scene

        t = pq.read_table(path).to_pydict()
        scenes = [None if s is None else Scene.from_json(s) for s in t["scene"]]
        emb = None
        if t["embedding"] and all(e is not None for e in t["embedding"]):
            emb = np.asarray(t["embedding"], np.float32)
            emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        pool = cls(t["image_id"], t["image"], t["label"], scenes, emb)
        pool.scene_index = {s: i for i, s in enumerate(scenes) if s is not None}
        pool.id_index = {x: i for i, x in enumerate(pool.ids)}
        return pool

    def __len__(self) -> int:
        return len(self.ids)

    def candidates(self, rng: random.Random, limit: int, near: np.ndarray | None = None,
                   exclude: Iterable[int] = ()) -> list[int]:
        """Up to ``limit`` pool indices: most similar to ``near`` first when embeddings exist, else shuffled."""
        skip = set(exclude)
        if near is not None and self.embeddings is not None:
            order = np.argsort(-(self.embeddings @ near), kind="stable").tolist()
        else:
            order = list(range(len(self.ids)))
            rng.shuffle(order)
        return [i for i in order if i not in skip][:limit]
