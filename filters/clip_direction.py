"""CLIP directional similarity: cos(E_I(tgt) - E_I(ref), E_T(text) - E_T(null text)).

The image change and the change the text implies must point the same way (the InstructPix2Pix
paper's metric, with the modification text standing in for the caption difference).
"""
from __future__ import annotations

from filters.base import EMB_REFERENCE, EMB_TARGET, EMB_TEXT_DIRECTION, Filter, cosine, embedding


class ClipDirectionFilter(Filter):
    """Needs the embedding columns (filters/embed_columns.py); unscored without them."""

    name = "clip_direction"
    score_field = "clip_direction"
    reason = "low_clip_direction"
    optional_reads = Filter.optional_reads + (EMB_REFERENCE, EMB_TARGET, EMB_TEXT_DIRECTION)

    def score_row(self, row: dict) -> float | None:
        r, t, d = embedding(row, EMB_REFERENCE), embedding(row, EMB_TARGET), embedding(row, EMB_TEXT_DIRECTION)
        if r is None or t is None or d is None:
            return None
        return cosine(t - r, d)
