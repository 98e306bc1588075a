"""Pairs whose captions differ by exactly one word (a substitution at one position)."""
from __future__ import annotations

import re
from collections import defaultdict
from typing import Sequence

import numpy as np

from .pairs import MinedPair, choose_targets

_WORD = re.compile(r"[\w'-]+")


def words(caption: str) -> tuple[str, ...]:
    """Lower-cased words; punctuation is not a word."""
    return tuple(_WORD.findall(caption.lower()))


def mine_one_word_captions(ids: Sequence[str], captions: Sequence[str | None], k: int, *, seed: int,
                           embeddings: np.ndarray | None = None, near_dup: float = 1.0,
                           pick: str = "random") -> list[MinedPair]:
    """For each captioned image, at most k others whose caption has one word swapped.

    Each caption of n words goes into n buckets keyed by the caption with one position blanked;
    two captions share a bucket exactly when they differ at most at that position (O(total words)).
    """
    toks = [words(c) if c else () for c in captions]
    buckets: dict[tuple, list[int]] = defaultdict(list)
    for i, w in enumerate(toks):
        for p in range(len(w)):
            buckets[(p,) + w[:p] + ("\x00",) + w[p + 1:]].append(i)
    neighbours: dict[int, set[int]] = defaultdict(set)
    for members in buckets.values():
        if len(members) > 1:
            for i in members:
                neighbours[i].update(j for j in members if toks[j] != toks[i])
    out: list[MinedPair] = []
    for i in sorted(neighbours):
        out += choose_targets(i, neighbours[i], k, ids=ids, seed=seed, strategy="caption",
                              embeddings=embeddings, near_dup=near_dup, pick=pick)
    return out
