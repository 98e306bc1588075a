"""Text-image consistency: the text must describe the target better than it describes the reference.

ShapesWorld: exact (the text applied to the reference scene gives the target scene: 1, else 0).
Photos: cos(E_I(tgt), E_T(text)) - cos(E_I(ref), E_T(text)).
"""
from __future__ import annotations

from filters.base import (EMB_REFERENCE, EMB_TARGET, EMB_TEXT, SCENE_COLUMNS, Filter, cosine, embedding, scenes_of,
                          texts_of)


class TextImageConsistencyFilter(Filter):
    """A hallucinated text (names what is not there, or a change that did not happen) scores low."""

    name = "text_image_consistency"
    score_field = "text_image_consistency"
    reason = "text_does_not_match_images"
    reads = ("modification_text",)
    optional_reads = Filter.optional_reads + SCENE_COLUMNS + (EMB_REFERENCE, EMB_TARGET, EMB_TEXT)

    def score_row(self, row: dict) -> float | None:
        scenes = scenes_of(row)
        if scenes is not None:
            from pipeline.shapesworld import apply_text

            ref, tgt = scenes
            return 1.0 if apply_text(texts_of(row), ref) == tgt else 0.0
        r, t, x = embedding(row, EMB_REFERENCE), embedding(row, EMB_TARGET), embedding(row, EMB_TEXT)
        if r is None or t is None or x is None:
            return None
        return cosine(t, x) - cosine(r, x)

    def keep(self, score: float, row: dict) -> bool:
        if scenes_of(row) is not None:
            return score >= 1.0
        return score >= self.config.get("min_score", 0.0)
