"""Which text stages a run uses, chosen by ``generator.kind`` in the run config."""
from __future__ import annotations

from pipeline.config import RunConfig
from pipeline.runtime import StageSpec


def generator_name(cfg: RunConfig) -> str:
    """The id recorded in the ``generator`` column (and hashed into triplet ids)."""
    if cfg.generator.kind == "annotator":
        from generators.annotator_stage import ANNOTATOR_ID

        return ANNOTATOR_ID
    raise ValueError(f"generator.kind={cfg.generator.kind!r} is not known")


def text_stage_specs(cfg: RunConfig) -> list[StageSpec]:
    if cfg.generator.kind == "annotator":
        from generators.annotator_stage import AnnotatorTextStage

        return [StageSpec(AnnotatorTextStage, {"seed": cfg.seed})]
    raise ValueError(f"generator.kind={cfg.generator.kind!r} is not known")
