"""The reproduction table's config: ``ReproduceConfig`` and its specs, the table's rows, the cache key."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from pipeline.config_base import Section, load_section
from trainers.config import SHAPESWORLD_TINY, ModelConfig


class SeedSetSpec(Section):
    """The annotated seed set: ShapesWorld pairs with annotator texts and exact FBCIR negatives."""

    n_triplets: int = Field(300, ge=1, description="annotated triplets (one target per reference)")
    seed: int = Field(1000, description="ShapesWorld seed of the seed set")
    max_edits: int = Field(2, ge=1, le=2, description="edits between reference and target: 1 to this many")


class BenchmarkSpec(Section):
    """The held-out ShapesWorld benchmark (its own seed; no image shared with any training data)."""

    references: int = Field(100, ge=1, description="reference images; each heads a group of targets")
    targets_per_reference: int = Field(4, ge=1, description="queries per reference (its group for Rs@K)")
    seed: int = Field(9000, description="ShapesWorld seed of the benchmark (differs from every training seed)")
    max_edits: int = Field(2, ge=1, le=2)
    focus_queries: int = Field(40, ge=1, description="queries the focus diagnosis occludes")
    focus_grid: int = Field(4, ge=1, description="occlusion grid side (grid x grid patches)")


class CaptionSpec(Section):
    """The caption stage before any pair (as the MTST generator's, docs/mtst.md): rendered ShapesWorld scenes
    with their captions, image-text contrastive (L_t2t alone: caption feature vs image tokens). Image-text
    pairs, no triplet: every row starts from it, as from a pretrained BLIP-2."""

    steps: int = Field(0, ge=0, description="0: no caption stage (rows start from random init)")
    images: int = Field(4000, ge=1, description="rendered scenes with captions")
    seed: int = Field(3000, description="ShapesWorld seed of the scenes (differs from every other set)")
    lr: float = Field(5e-4, gt=0)
    batch_size: int = Field(64, ge=2)
    max_text_len: int = Field(48, ge=8, description="captions run to ~40 tokens")


class PhaseSpec(Section):
    """One training phase's length and optimizer."""

    steps: int = Field(100, ge=1)
    lr: float = Field(1e-3, gt=0)
    batch_size: int = Field(32, ge=2)
    warmup_steps: int = Field(0, ge=0, description="linear warmup to lr")
    schedule: Literal["constant", "cosine"] = Field("constant", description="lr after warmup")


# The generator of the synthetic rows: the tiny MTST model as a user's run trains it (generator.kind mtst),
# much smaller than the demo's (1,000 annotated triplets instead of 4,000, 188 pair steps instead of 1,625,
# 200 caption steps on 4,000 scenes instead of 600 on 20,000) so that it trains inside the table's budget
# on a shared 2-core machine; the round-trip filter keeps only the rows whose text is exactly right.
MTST_GENERATOR = {"kind": "mtst", "mtst": {
    "data": {"n_triplets": 1000},
    "train": {"epochs": 6, "caption_steps": 200, "caption_images": 4000, "num_threads": 2}}}


def default_synthetic(oracle: bool = False) -> dict:
    """The built-in run config keys of the synthetic shards (``ReproduceConfig.synthetic`` merges over them);
    ``oracle``: the same shards with the annotator's exact texts instead of the generator's."""
    # ShapesWorld families, label mining (pairs inside a family: 1-2 edits apart), the MTST generator's
    # texts (or the annotator's), exact ShapesWorld FBCIR negatives, the exact round-trip filter. No CLIP
    # is needed: near-duplicate removal and the CLIP filters are off (distinct scenes are never duplicates).
    return {
        "name": "reproduce-synthetic" if oracle else "reproduce-synthetic-mtst", "seed": 2000,
        "source": {"kind": "shapesworld", "shapesworld": {"image_size": 64, "families": 300, "variants_per_family": 4}},
        "embedder": {"tiny": {"steps": 10, "families": 10, "batch_size": 32}},
        "mining": {"strategies": ["label"], "k": 4, "near_dup": 1.0},
        "generator": {"kind": "annotator"} if oracle else MTST_GENERATOR,
        "negatives": {"editor": "shapesworld"},
        "filters": {"clip_direction": {"enabled": False}, "image_similarity": {"enabled": False},
                    "text_image_consistency": {"enabled": False}},
        "shards": {"rows_per_unit": 256},
    }


class ReproduceConfig(Section):
    """Everything the table depends on; its parts hash into the cache keys."""

    out_dir: Path = Field(Path("cache/reproduce"), description="cache of data, models and evaluations")
    train_seeds: list[int] = Field([0, 1, 2], min_length=1, description="one full training per seed and row")
    image_size: int = Field(64, ge=16, description="rendered image side of every set")
    input_size: int | None = Field(None, ge=16, description="the model's input side (default: image_size); "
                                   "63 = three 21 px patches a side, one per ShapesWorld grid cell")
    seed_set: SeedSetSpec = SeedSetSpec()
    synthetic: dict[str, Any] = Field(default_factory=dict, description="run config keys of the synthetic "
                                      "shards (pipeline.config.RunConfig), merged over the built-in ones")
    benchmark: BenchmarkSpec = BenchmarkSpec()
    model: ModelConfig = ModelConfig(tiny=SHAPESWORLD_TINY)
    captions: CaptionSpec = CaptionSpec()
    pretrain: PhaseSpec = PhaseSpec(steps=300, lr=5e-4, warmup_steps=30, schedule="cosine")
    finetune: PhaseSpec = PhaseSpec(steps=100, lr=5e-4, warmup_steps=10, schedule="cosine")
    p2p: float = Field(0.5, gt=0, description="alpha of L_p2p in the PTHA rows")
    t2t: float = Field(0.0, ge=0, description="weight of the text term (L_t2t) in the pair phases (the text alone "
                                              "cannot name a target: it lowered R@1 here; the caption stage uses it)")
    rows_on_oracle: bool = Field(False, description="pretrain every pretraining row on the annotator-text shards "
                                 "(the PTHA, FBCIR and DetailFusion claims where the pretraining texts are exact)")
    workers: int = Field(2, ge=1, description="trainings run in parallel processes")
    threads_per_worker: int = Field(1, ge=1, description="torch threads per process (1 is fastest for tiny models)")


def input_size(cfg: ReproduceConfig) -> int:
    """The side the models read images at."""
    return cfg.input_size or cfg.image_size


def load_reproduce_config(path: str | Path | None = None, overrides: dict | None = None) -> ReproduceConfig:
    """Defaults, updated from a YAML file and then from ``overrides`` (dotted keys).

    A missing file is a FileNotFoundError; a bad key or value a ValueError of one line that names it.
    """
    return load_section(ReproduceConfig, path, overrides, what="reproduce config")


@dataclass(frozen=True)
class RowSpec:
    name: str
    pretrain: bool
    p2p: bool
    fbcir: bool
    kind: str = "qformer_cir"
    oracle: bool = False  # pretrain on the annotator-text shards instead of the generator's


ROWS = (
    RowSpec("seed set only", pretrain=False, p2p=False, fbcir=False),
    RowSpec("+ synthetic pretraining", pretrain=True, p2p=False, fbcir=False),
    RowSpec("+ synthetic pretraining (annotator texts)", pretrain=True, p2p=False, fbcir=False, oracle=True),
    RowSpec("+ PTHA reverse", pretrain=True, p2p=True, fbcir=False),
    RowSpec("+ FBCIR negatives", pretrain=True, p2p=True, fbcir=True),
    RowSpec("DetailFusion", pretrain=True, p2p=False, fbcir=True, kind="detailfusion"),
)


def cache_key(obj: Any) -> str:
    """sha256 (16 hex) of ``obj`` as sorted JSON: the name of a cached set, training or evaluation."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]
