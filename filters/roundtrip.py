"""Forward/reverse round trip: the reverse text must undo the forward text.

ShapesWorld rows are checked exactly with the parser; photo rows with embeddings: the forward
text must point along E_I(tgt) - E_I(ref) and the reverse text back along its opposite.
"""
from __future__ import annotations

from filters.base import (EMB_REFERENCE, EMB_REVERSE_DIRECTION, EMB_TARGET, EMB_TEXT_DIRECTION, SCENE_COLUMNS, Filter,
                          cosine, embedding, scenes_of, texts_of)


def exact_roundtrip(fwd: str, rev: str, ref, tgt) -> float:
    """Share of three exact checks: fwd(ref) = tgt, rev(tgt) = ref, rev(fwd(ref)) = ref."""
    from pipeline.shapesworld import apply_text

    mid = apply_text(fwd, ref)
    back = apply_text(rev, mid) if mid is not None else None
    checks = (mid == tgt, apply_text(rev, tgt) == ref, back == ref)
    return sum(checks) / len(checks)


class RoundtripFilter(Filter):
    """Scores the round trip in [0, 1] (ShapesWorld) or as a cosine (photos); None without a reverse text."""

    name = "roundtrip"
    score_field = "roundtrip"
    reads = ("modification_text", "reverse_text")
    optional_reads = Filter.optional_reads + SCENE_COLUMNS + (EMB_REFERENCE, EMB_TARGET, EMB_TEXT_DIRECTION,
                                                              EMB_REVERSE_DIRECTION)

    def score_row(self, row: dict) -> float | None:
        rev = row.get("reverse_text")
        if not rev:
            return None
        scenes = scenes_of(row)
        if scenes is not None:
            return exact_roundtrip(texts_of(row), rev, *scenes)
        r, t = embedding(row, EMB_REFERENCE), embedding(row, EMB_TARGET)
        f, b = embedding(row, EMB_TEXT_DIRECTION), embedding(row, EMB_REVERSE_DIRECTION)
        if r is None or t is None or f is None or b is None:
            return None
        return min(cosine(t - r, f), cosine(r - t, b))

    def keep(self, score: float, row: dict) -> bool:
        if scenes_of(row) is not None:
            return score >= self.config.get("min_score", 1.0)
        return score >= self.config.get("min_embedding_score", 0.0)
