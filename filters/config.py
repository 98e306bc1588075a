"""Config sections of the quality filters: one per scorer, each with its threshold (defaults live here)."""
from __future__ import annotations

from pydantic import Field, field_validator

from pipeline.config_base import Section


class TextSanityConfig(Section):
    """Reject empty, overlong, stuttering or unprintable texts (forward and reverse)."""

    enabled: bool = True
    max_chars: int = Field(300, ge=1, description="longest text kept, in characters")
    max_words: int = Field(50, ge=1, description="longest text kept, in words")
    max_repeat: int = Field(3, ge=2, description="the same word this many times in a row is a stutter")
    min_distinct_ratio: float = Field(0.3, ge=0, le=1, description="distinct words / words at least this "
                                                                    "(for texts of 8 words or more)")


class DuplicatesConfig(Section):
    """Reject the same pair twice and one text written for too many pairs (streaming, first kept)."""

    enabled: bool = True
    max_pairs_per_text: int = Field(200, ge=1, description="rows allowed to share one normalized text")


class RoundtripConfig(Section):
    """Forward then reverse must return to the reference (ShapesWorld: exactly, by the parser)."""

    enabled: bool = True
    min_score: float = Field(1.0, ge=0, le=1, description="ShapesWorld: share of the 3 exact checks passed")
    min_embedding_score: float = Field(0.0, ge=-1, le=1, description="photos: min of forward and reverse "
                                                                     "directional cosines")


class TextImageConsistencyConfig(Section):
    """The text describes the target better than the reference (ShapesWorld: text applied to ref = target)."""

    enabled: bool = True
    min_score: float = Field(0.0, ge=-2, le=2, description="photos: cos(tgt,text) - cos(ref,text) at least; "
                                                           "ShapesWorld scores 1 or 0 and keeps 1")


class ClipDirectionConfig(Section):
    """CLIP directional similarity cos(E_I(tgt) - E_I(ref), E_T(text) - E_T(null text))."""

    enabled: bool = True
    min_score: float = Field(0.0, ge=-1, le=1, description="directional cosine at least this")
    null_text: str = Field("", description="the text whose embedding is subtracted from the text's")


class ImageSimilarityConfig(Section):
    """Reference and target must be alike but not the same: cos(E_I(ref), E_I(tgt)) in a band."""

    enabled: bool = True
    low: float = Field(0.5, ge=-1, le=1, description="less similar than this: unrelated images")
    high: float = Field(0.98, ge=-1, le=1, description="at least this similar: the same image")


class CombinedScoreConfig(Section):
    """Photos: one logistic-regression score over the four embedding filters' scores, fitted by
    `cirforge filters calibrate` (filters/combined.py); unset weights: not in the chain."""

    enabled: bool = True
    weights: dict[str, float] = Field(default_factory=dict, description="per unit of each score (roundtrip, "
                                      "text_image_consistency, clip_direction, image_similarity); empty: off")
    center: dict[str, float] = Field(default_factory=dict, description="each score's mean on the labelled sample")
    bias: float = Field(0.0, description="the logit at the sample's means")
    max_p_bad: float = Field(0.5, ge=0, le=1.01, description="reject a row whose p(bad text) is at least this")

    @field_validator("weights", "center")
    @classmethod
    def _known_scores(cls, v: dict[str, float]) -> dict[str, float]:
        from filters.combined import SCORES

        unknown = sorted(set(v) - set(SCORES))
        if unknown:
            raise ValueError(f"unknown score {unknown[0]!r}; the combined score reads {', '.join(SCORES)}")
        return v


class FiltersConfig(Section):
    """The quality and hallucination filters, run after the negatives in this order."""

    enabled: bool = True
    text_sanity: TextSanityConfig = TextSanityConfig()
    roundtrip: RoundtripConfig = RoundtripConfig()
    text_image_consistency: TextImageConsistencyConfig = TextImageConsistencyConfig()
    clip_direction: ClipDirectionConfig = ClipDirectionConfig()
    image_similarity: ImageSimilarityConfig = ImageSimilarityConfig()
    combined: CombinedScoreConfig = CombinedScoreConfig()
    duplicates: DuplicatesConfig = DuplicatesConfig()
