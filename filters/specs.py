"""The filter chain a run uses, built from the ``filters`` config section."""
from __future__ import annotations

from typing import Any

from filters.config import FiltersConfig
from pipeline.runtime import StageSpec


def filter_stage_specs(cfg: FiltersConfig | None = None, embedder: Any = None,
                       embedder_gpu: bool = False) -> list[StageSpec]:
    """Stage specs in run order: sanity, (embeddings), round trip, consistency, direction, band,
    (combined score, once calibrated), duplicates.

    ``embedder`` is a spec for filters.embed_columns.load_embedder (picklable dict for Ray); without
    one, photo rows are left unscored by the embedding filters and ShapesWorld rows are checked exactly.
    """
    from filters.clip_direction import ClipDirectionFilter
    from filters.combined import CombinedScoreFilter
    from filters.duplicates import DuplicatesFilter
    from filters.embed_columns import EmbedColumnsGPUStage, EmbedColumnsStage
    from filters.image_similarity import ImageSimilarityFilter
    from filters.roundtrip import RoundtripFilter
    from filters.text_image_consistency import TextImageConsistencyFilter
    from filters.text_sanity import TextSanityFilter

    cfg = cfg or FiltersConfig()
    if not cfg.enabled:
        return []

    def opts(section) -> dict:
        return section.model_dump(mode="json", exclude={"enabled"})

    specs = []
    if cfg.text_sanity.enabled:
        specs.append(StageSpec(TextSanityFilter, opts(cfg.text_sanity)))
    if embedder is not None:
        cls = EmbedColumnsGPUStage if embedder_gpu else EmbedColumnsStage
        specs.append(StageSpec(cls, {"embedder": embedder, "null_text": cfg.clip_direction.null_text}))
    for section, cls in ((cfg.roundtrip, RoundtripFilter),
                         (cfg.text_image_consistency, TextImageConsistencyFilter),
                         (cfg.clip_direction, ClipDirectionFilter),
                         (cfg.image_similarity, ImageSimilarityFilter)):
        if section.enabled:
            kw = opts(section)
            kw.pop("null_text", None)
            specs.append(StageSpec(cls, kw))
    if cfg.combined.enabled and cfg.combined.weights:  # reads the scores above
        specs.append(StageSpec(CombinedScoreFilter, opts(cfg.combined)))
    if cfg.duplicates.enabled:  # a driver stage: last, over rows in run order
        specs.append(StageSpec(DuplicatesFilter, opts(cfg.duplicates)))
    return specs
