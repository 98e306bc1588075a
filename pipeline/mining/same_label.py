"""Pairs of images that share a label (a folder, a category, a ShapesWorld family)."""
from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import numpy as np

from pipeline.seeding import derive_seed

from .pairs import MinedPair, choose_targets
from .search import topk_self


def mine_same_label(ids: Sequence[str], labels: Sequence[str | None], k: int, *, seed: int,
                    embeddings: np.ndarray | None = None, near_dup: float = 1.0, pick: str = "random",
                    block_size: int = 4096, device: str = "cpu", precision: str = "float32") -> list[MinedPair]:
    """For each labelled image, at most k others with the same label (unlabelled images sit out)."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, lab in enumerate(labels):
        if lab is not None:
            groups[str(lab)].append(i)
    out: list[MinedPair] = []
    for label in sorted(groups):
        members = groups[label]
        if len(members) < 2:
            continue
        if pick == "nearest" and embeddings is not None:
            # A large category is searched exactly in blocks, like the similarity band.
            vals, idx = topk_self(embeddings[members], k, block_size=block_size, band=(-2.0, near_dup), device=device,
                                   precision=precision)
            out += [MinedPair(ids[members[r]], ids[members[idx[r, s]]], float(vals[r, s]), "label")
                    for r, s in zip(*np.nonzero(idx >= 0))]
        else:
            # Draw 2k candidates per reference (not the whole group): near-duplicates may drop some.
            arr = np.array(members)
            for m in members:
                rng = np.random.default_rng(derive_seed(seed, "label-candidates", ids[m]))
                cands = arr[rng.choice(arr.size, size=min(arr.size, 2 * k + 1), replace=False)]
                out += choose_targets(m, cands, k, ids=ids, seed=seed, strategy="label",
                                      embeddings=embeddings, near_dup=near_dup, pick="random")
    return out
