"""Which generation stages a run uses: texts (``generator.kind``), negatives, then filters."""
from __future__ import annotations

from pathlib import Path

from generators.mtst.config import is_mtst_dir
from pipeline.job.config import RunConfig
from pipeline.runtime import StageSpec


def generator_name(cfg: RunConfig) -> str:
    """The id recorded in the ``generator`` column (and hashed into triplet ids).

    MTST ids carry the training hash (tiny) or the checkpoint, so two models never share ids.
    """
    if cfg.generator.kind == "annotator":
        from generators.annotator_stage import ANNOTATOR_ID

        return ANNOTATOR_ID
    if cfg.generator.kind == "mtst":
        m = cfg.generator.mtst
        if m.model.pretrained and is_mtst_dir(m.model.pretrained):  # used as it is
            return f"mtst:{Path(m.model.pretrained).name}"
        base = f"-{Path(m.model.pretrained).name}" if m.model.pretrained else "-tiny"  # trained on the seed set
        return f"mtst{base}-{m.train_hash()[:12]}"
    raise ValueError(f"generator.kind={cfg.generator.kind!r} is not known")


def prepare_generator(cfg: RunConfig) -> str | None:
    """Train (or load from the cache) what the text stage needs; returns the model folder, if any.

    The MTST model (tiny, or an InstructBLIP checkpoint) trains on the seed set ``generator.mtst.data``
    names (ShapesWorld by default; CIRR, FashionIQ or shards), once per training hash; a run with the
    same config loads it from ``<cache_dir>/mtst`` (``cirforge generator train`` fills the same cache).
    """
    if cfg.generator.kind != "mtst":
        return None
    from generators.mtst.train import train_mtst

    mcfg = cfg.mtst_config()
    if mcfg.model.pretrained and is_mtst_dir(mcfg.model.pretrained):
        return str(mcfg.model.pretrained)
    return str(train_mtst(mcfg).model_dir)


def text_stage_specs(cfg: RunConfig, model_dir: str | None = None) -> list[StageSpec]:
    if cfg.generator.kind == "annotator":
        from generators.annotator_stage import AnnotatorTextStage

        return [StageSpec(AnnotatorTextStage, {"seed": cfg.seed})]
    if cfg.generator.kind == "mtst":
        from generators.mtst.text_stage import MTSTTextStage

        if model_dir is None:
            raise ValueError("generator.kind='mtst' needs the trained model: call prepare_generator(cfg) first")
        return [StageSpec(MTSTTextStage, {"model_path": model_dir, "config": cfg.generator.mtst.infer},
                          num_gpus=1.0 if on_gpu(cfg.generator.mtst.infer.device) else 0.0)]
    raise ValueError(f"generator.kind={cfg.generator.kind!r} is not known")


def embedder_spec(cfg: RunConfig) -> dict | None:
    """A picklable embedder spec for Ray workers (filters/embed_columns.load_embedder), or None.

    ShapesWorld rows are checked exactly by scene graph; photos need CLIP margins.
    """
    if cfg.source.kind == "shapesworld":
        return None
    return {"factory": "pipeline.embedder:embedder_from_dict",
            "kwargs": {"config": cfg.embedder.model_dump(mode="json"), "cache_dir": str(cfg.cache_dir)}}


def all_stage_specs(cfg: RunConfig, model_dir: str | None, pool_path: str | Path | None) -> list[StageSpec]:
    """Texts -> FBCIR negatives -> filters, in run order."""
    from filters.specs import filter_stage_specs
    from generators.negatives.stage import negative_stage_specs

    emb = embedder_spec(cfg)
    specs = text_stage_specs(cfg, model_dir)
    if cfg.negatives.enabled:
        if pool_path is None:
            raise ValueError("negatives.enabled needs the candidate pool file: run pipeline.job.generate.prepare(cfg, plan) first")
        specs += negative_stage_specs(cfg.negatives, pool_path, seed=cfg.seed, embedder=emb)
    specs += filter_stage_specs(cfg.filters, embedder=emb, embedder_gpu=on_gpu(cfg.embedder.device))
    # GPU stages: one actor per GPU, as many as runtime.gpu_actors
    return [StageSpec(s.cls, s.kwargs, s.num_gpus, cfg.runtime.gpu_actors) if s.gpus else s for s in specs]


def on_gpu(device: str) -> bool:
    """Whether a stage with this ``device`` setting asks Ray for a GPU. Decided from the config,
    not from the driver (a CPU head may drive GPU workers): ``cuda`` always, ``auto`` when the
    driver sees one, ``cpu`` never."""
    return device == "cuda" or (device == "auto" and _cuda())


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False
