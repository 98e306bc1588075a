"""Pairs whose embedding similarity lies in a band: similar, but not the same image."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .pairs import MinedPair
from .search import topk_self


def mine_similarity_band(ids: Sequence[str], embeddings: np.ndarray, k: int, *, low: float, high: float,
                         near_dup: float = 1.0, block_size: int = 4096, device: str = "cpu",
                         precision: str = "float32") -> list[MinedPair]:
    """For each image, its (at most) k most similar others with low <= sim <= min(high, near_dup)."""
    if len(ids) != len(embeddings):
        raise ValueError(f"{len(ids)} ids but {len(embeddings)} embeddings")
    if len(ids) < 2:
        return []
    vals, idx = topk_self(embeddings, k, block_size=block_size, band=(low, min(high, near_dup)), device=device,
                            precision=precision)
    rows, slots = np.nonzero(idx >= 0)
    return [MinedPair(ids[r], ids[idx[r, s]], float(vals[r, s]), "similarity") for r, s in zip(rows, slots)]
