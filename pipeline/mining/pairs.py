"""The mined pair record, choosing at most k targets per reference, and the mirrored-pair dedup."""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from pipeline.seeding import derive_seed


class MinedPair(NamedTuple):
    """A (reference, target) pair; similarity is the embedding cosine, or None without embeddings."""

    reference_id: str
    target_id: str
    similarity: float | None
    strategy: str


def choose_targets(ref: int, candidates: Sequence[int], k: int, *, ids: Sequence[str], seed: int,
                   strategy: str, embeddings: np.ndarray | None = None, near_dup: float = 1.0,
                   pick: str = "random") -> list[MinedPair]:
    """At most k pairs (ref, c) among the candidates; near-duplicates (sim > near_dup) never.

    ``pick="nearest"`` takes the most similar (needs embeddings); ``"random"`` draws with a
    generator seeded by (seed, strategy, reference id), so the choice does not depend on order.
    """
    cands = np.array(sorted(set(int(c) for c in candidates) - {ref}), dtype=np.int64)
    if cands.size == 0:
        return []
    sims = None
    if embeddings is not None:
        sims = embeddings[cands] @ embeddings[ref]
        keep = sims <= near_dup
        cands, sims = cands[keep], sims[keep]
    if pick == "nearest" and sims is not None:
        order = np.lexsort((cands, -sims))[:k]  # most similar first; ties by position (= sorted id)
    else:
        rng = np.random.default_rng(derive_seed(seed, strategy, ids[ref]))
        order = np.sort(rng.permutation(cands.size)[:k])
    return [MinedPair(ids[ref], ids[c], None if sims is None else float(sims[o]), strategy)
            for o, c in zip(order, cands[order])]


def dedup_pairs(pairs: list[MinedPair], *, allow_mirrored: bool, seed: int) -> list[MinedPair]:
    """One record per (reference, target) (the earliest wins), and unless allowed, per unordered pair.

    Of a mirrored (a, b) / (b, a), the kept direction is drawn from (seed, pair), so references
    are not biased toward ids that sort first.
    """
    by_pair: dict[tuple[str, str], MinedPair] = {}
    for p in pairs:
        by_pair.setdefault((p.reference_id, p.target_id), p)
    if not allow_mirrored:
        for (a, b) in list(by_pair):
            if a < b and (b, a) in by_pair:
                drop = (b, a) if derive_seed(seed, "mirror", a, b) % 2 == 0 else (a, b)
                del by_pair[drop]
    return [by_pair[key] for key in sorted(by_pair)]
