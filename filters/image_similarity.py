"""Image-image similarity band: reference and target alike (one edit apart), not the same image."""
from __future__ import annotations

from filters.base import EMB_REFERENCE, EMB_TARGET, Filter, cosine, embedding


class ImageSimilarityFilter(Filter):
    """cos(E_I(ref), E_I(tgt)) from the embed stage, else the miner's score; keeps low <= s < high."""

    name = "image_similarity"
    score_field = "image_similarity"
    optional_reads = Filter.optional_reads + (EMB_REFERENCE, EMB_TARGET)  # else the miner's score in scores

    def score_row(self, row: dict) -> float | None:
        r, t = embedding(row, EMB_REFERENCE), embedding(row, EMB_TARGET)
        if r is not None and t is not None:
            return cosine(r, t)
        mined = (row.get("scores") or {}).get("image_similarity")
        return None if mined is None else float(mined)

    def keep(self, score: float, row: dict) -> bool:
        return self.config.get("low", 0.5) <= score < self.config.get("high", 0.98)

    def reason_for(self, score: float, row: dict) -> str:
        return "too_different" if score < self.config.get("low", 0.5) else "near_duplicate"
