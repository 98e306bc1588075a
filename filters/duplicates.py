"""Duplicates: the same pair twice, or one text written for too many pairs (a generator in a rut).

Streaming and stateful: the first occurrence is kept, later ones are rejected. It is a driver
stage (last in the chain, in the driver) so that "first" means first in the run's deterministic
row order, and a resumed run rebuilds its counts from the committed units (``replay``): an
interrupted and rerun job keeps and rejects exactly the rows an uninterrupted one does.
"""
from __future__ import annotations

import hashlib
import re
from collections import Counter

from filters.base import Filter, texts_of

_NON_WORD = re.compile(r"[^\w]+", re.UNICODE)


def normalize_text(text: str) -> str:
    """Lowercase words joined by single spaces: 'Make it red.' and 'make it red' are one text."""
    return " ".join(_NON_WORD.sub(" ", text.lower()).split())


def _image_key(image) -> str | None:
    if isinstance(image, dict) and image.get("bytes"):
        return hashlib.sha256(image["bytes"]).hexdigest()[:16]
    if isinstance(image, dict) and image.get("path"):
        return str(image["path"])
    return None


class DuplicatesFilter(Filter):
    """Score: 1 for a repeated pair, else (earlier rows with the same text) / max_pairs_per_text; keeps < 1."""

    name = "duplicates"
    score_field = "duplicate"
    reads = ("reference_id", "target_id", "modification_text")
    optional_reads = Filter.optional_reads + ("reference_image", "target_image")  # same images under other ids
    stateful = True
    concurrency = 1
    driver = True

    def __init__(self, **config):
        super().__init__(**config)
        self.seen_pairs: set = set()
        self.text_counts: Counter = Counter()
        self._why: dict[int, str] = {}

    def score_rows(self, rows: list[dict]) -> list[float]:
        limit = self.config.get("max_pairs_per_text", 200)
        out = []
        self._why = {}
        for row in rows:
            keys = {("id", row["reference_id"], row["target_id"])}
            ik = (_image_key(row.get("reference_image")), _image_key(row.get("target_image")))
            if None not in ik:
                keys.add(("bytes",) + ik)
            if keys & self.seen_pairs:
                self._why[id(row)] = "same_pair"
                out.append(1.0)
                continue
            self.seen_pairs |= keys
            t = normalize_text(texts_of(row))
            prior = self.text_counts[t]
            self.text_counts[t] += 1
            if prior >= limit:
                self._why[id(row)] = "text_reused"
            out.append(prior / limit)
        return out

    def replay(self, rows: list[dict]) -> None:
        self.score_rows(rows)

    def keep(self, score: float, row: dict) -> bool:
        return score < 1.0

    def reason_for(self, score: float, row: dict) -> str:
        return self._why.get(id(row), self.reason)
