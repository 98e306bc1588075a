"""Options of the MTST text generator: model size, seed-set training, inference, evaluation.

``MTSTConfig`` is one section meant to sit in the run config (e.g. ``generator.mtst``); its
defaults are the tiny ShapesWorld model that trains on 2 CPU cores in minutes.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from generators.mtst.prompt import INSTRUCTION
from pipeline.config_base import Section, load_section

__all__ = ["INSTRUCTION", "MTSTConfig", "MTSTDataConfig", "MTSTEvalConfig", "MTSTInferConfig", "MTSTModelConfig",
           "MTSTTrainConfig", "load_mtst_config"]


# Bumped when the model's parameters change, so that a cached run of an older layout is not loaded.
# 2: segment embeddings on the joint Q-Former pass. 3: the caption stage. 4: region queries (query_grid).
# 5: the difference block of the joint pass (joint_difference), the prefix region by region (interleave_prefix).
MTST_ARCH = 5
# Training options added after MTST_ARCH 5, with the value that trains as before they existed.
_TRAIN_ADDED = {"dropout": None, "freeze_vision": False, "permute_attributes": 0.0, "mixed_precision": "auto",
                "grad_accum": 1, "lora_rank": None, "lora_alpha": 16.0, "lora_targets": ("q_proj", "v_proj"),
                "gradient_checkpointing": False}
# Seed-set options added after MTST_ARCH 5 (the ShapesWorld default hashes as before).
_DATA_ADDED = {"kind": "shapesworld", "path": None, "split": "train", "categories": None, "limit": None,
               "read_reverse": False}
SEED_KINDS = ("shapesworld", "cirr", "fashioniq", "shards")


class MTSTModelConfig(Section):
    """Which model: a checkpoint (MTST or InstructBLIP, hub id or path), else a tiny one from these sizes."""

    pretrained: str | None = Field(None, description="MTST dir, or InstructBLIP hub id / path; None: tiny")
    train_all: bool | None = Field(
        None, description="train vision + LLM too; None: True for tiny, False (Q-Former only) for a checkpoint"
    )
    instruction: str = Field(
        INSTRUCTION, description="tiny model: the instruction it is trained with (the MTST authors' prompt; a "
        "two-word one makes steps 20% cheaper but scored lower, docs/mtst.md); a checkpoint keeps the authors' "
        "prompt (or the one its MTST folder was saved with)",
    )
    image_size: int = Field(
        63, ge=16, description="tiny: input side in pixels (63 = 3 x 21: one patch per ShapesWorld cell)"
    )
    patch_size: int = Field(21, ge=2)
    vision_hidden: int = Field(96, ge=8)
    vision_layers: int = Field(3, ge=1)
    vision_heads: int = Field(2, ge=1)
    qformer_hidden: int = Field(96, ge=8)
    qformer_layers: int = Field(2, ge=1)
    qformer_heads: int = Field(4, ge=1)
    num_query_tokens: int = Field(9, ge=1, description="query tokens per Q-Former pass (32 at real size)")
    query_grid: int | None = Field(
        3, ge=1, description="tiny: queries tile the image as a g x g grid, each reading the patches of its region "
        "(and CLS), in every pass; needs num_query_tokens = g * g; None: every query reads every patch (InstructBLIP)",
    )
    joint_difference: bool = Field(
        True, description="tiny: the joint Q-Former pass also reads target - reference patches (a third block, "
        "with its own segment embedding), so an unchanged region reads as zero there",
    )
    interleave_prefix: bool = Field(
        True, description="tiny: the LLM prefix region by region (ref q_i, target q_i, joint q_i, ...) instead of "
        "block by block (all ref queries, all target, all joint); meant for region queries (query_grid)",
    )
    llm_hidden: int = Field(128, ge=8, description="tiny LLM width; head_dim = llm_hidden / llm_heads = 64 for vLLM CPU")
    llm_layers: int = Field(2, ge=1)
    llm_heads: int = Field(2, ge=1)

    @field_validator("pretrained")
    @classmethod
    def _local_checkpoint_exists(cls, v: str | None) -> str | None:
        from pipeline.checkpoints import validate_checkpoint_field

        return validate_checkpoint_field("pretrained", v)

    @model_validator(mode="after")
    def _head_dims(self):
        for name, hidden, heads in (
            ("vision", self.vision_hidden, self.vision_heads),
            ("qformer", self.qformer_hidden, self.qformer_heads),
            ("llm", self.llm_hidden, self.llm_heads),
        ):
            if hidden % heads:
                raise ValueError(f"{name}_hidden={hidden} must be divisible by {name}_heads={heads}")
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size={self.image_size} must be a multiple of patch_size={self.patch_size}")
        if self.query_grid is not None and not self.pretrained:
            side = self.image_size // self.patch_size
            if self.num_query_tokens != self.query_grid**2 or side < self.query_grid:
                raise ValueError(
                    f"query_grid={self.query_grid} needs num_query_tokens={self.query_grid**2} (got "
                    f"{self.num_query_tokens}) and image_size / patch_size >= {self.query_grid} (got {side}); "
                    "or set query_grid: null"
                )
        return self


class MTSTDataConfig(Section):
    """The annotated seed set the generator learns from: ShapesWorld pairs written by its annotator
    (default), a CIRR or FashionIQ folder in the official layout, or cirforge shards."""

    kind: Literal["shapesworld", "cirr", "fashioniq", "shards"] = Field(
        "shapesworld", description="shapesworld: rendered pairs with annotator texts (the keys below); cirr / "
        "fashioniq: the benchmark's annotated triplets of `split` under `path` (official layout); shards: the kept "
        "rows of a cirforge dataset folder",
    )
    path: Path | None = Field(None, description="cirr / fashioniq / shards: the dataset folder (needed for them)")
    split: str = Field("train", description="cirr / fashioniq / shards: which split's triplets")
    categories: list[str] | None = Field(None, description="fashioniq: categories (None: every one found)")
    limit: int | None = Field(None, ge=1, description="cirr / fashioniq / shards: at most this many triplets "
                              "(the first in sorted order); None: all")
    read_reverse: bool = Field(
        False, description="cirr / fashioniq: also read reverse texts from the MTST authors' *_rev files beside the "
        "captions (e.g. the ones they released) and train both directions on them; off: the files "
        "`cirforge generator reverse` writes there do not retrain the model that wrote them",
    )
    n_triplets: int = Field(4000, ge=1, le=100_000, description="shapesworld: annotated seed triplets (CIRR's "
                            "training split has 28,225; 28,000 measured no better here, docs/mtst.md)")
    seed: int = Field(0, description="seed of the seed set; evaluation uses a different one")
    max_edits: int = Field(2, ge=1, le=2, description="edits per pair: 1 to this many (demo families: 1 or 2)")
    image_size: int = Field(64, ge=16, description="rendered side in pixels")

    @model_validator(mode="after")
    def _path_for_files(self):
        if self.kind != "shapesworld" and self.path is None:
            raise ValueError(f"data.path is missing: data.kind={self.kind!r} reads its triplets from a folder; "
                             "set data.path to the dataset root")
        if self.path is not None and not Path(self.path).expanduser().is_dir():
            raise ValueError(f"data.path={str(self.path)!r}: folder not found; give the {self.kind} dataset root")
        return self


class MTSTTrainConfig(Section):
    """Fitting the generator: LM loss on text tokens only, AdamW, checkpoints, cache by config hash."""

    seed: int = 0
    epochs: float = Field(13.0, gt=0, description="passes over the seed set (13 x 4,000 / 32 = 1,625 steps)")
    batch_size: int = Field(32, ge=1)
    lr: float = Field(5e-4, gt=0, description="also the caption stage's; the post-LN Q-Former stalls at 2e-3")
    min_lr_ratio: float = Field(0.05, ge=0, le=1, description="cosine decay ends at lr * this")
    warmup_steps: int = Field(50, ge=0)
    weight_decay: float = Field(0.01, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    dropout: float | None = Field(
        None, ge=0, lt=1, description="pair stage: dropout in the Q-Former (hidden and attention) and the trained "
        "LLM's attention; None: the model's own (0 for tiny, a checkpoint's config); the caption stage runs "
        "without (with it the queries learned shapes less often)",
    )
    caption_steps: int = Field(
        600, ge=0, description="tiny model: first caption single rendered ShapesWorld scenes for this many steps "
        "so the queries learn the objects; 0: skip; not used with model.pretrained",
    )
    caption_batch_size: int = Field(64, ge=1, description="scenes per caption-stage step")
    caption_images: int = Field(20_000, ge=1, description="rendered scenes (with captions) for that stage")
    freeze_vision: bool = Field(
        False, description="tiny model: the pair stage keeps the vision encoder as the caption stage left it "
        "(frozen, as at real size) and computes each seed image's patches once",
    )
    permute_attributes: float = Field(
        1.0, ge=0, le=1, description="ShapesWorld seed sets: the share of each step's pairs shown with their "
        "colors, shapes and settings renamed by a random permutation, in both scenes (re-rendered) and both "
        "texts (the words swapped; the texts stay true); 0: every pair as annotated; a seed set without "
        "scenes (CIRR/FashionIQ layout) always trains as annotated",
    )
    both_directions: bool = Field(
        True, description="also learn (target, reference) -> reverse text where the seed set has one; a seed set "
        "without reverse texts trains the forward direction only and the reverse text is the same model on "
        "(target, reference), as the MTST authors obtain it",
    )
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = Field(
        "auto", description="accelerate's mixed precision: auto = bf16 on a GPU, none on CPU; frozen parts are "
        "then held in that dtype too",
    )
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimizer step: batch_size pairs a step are "
                            "split over the processes and these micro-batches (the schedule stays the same)")
    gradient_checkpointing: bool = Field(False, description="recompute the LLM's activations in backward "
                                         "(less memory, ~30% slower steps)")
    lora_rank: int | None = Field(None, ge=1, description="checkpoint only: LoRA adapters of this rank on the "
                                  "frozen LLM (peft), trained with the Q-Former; None: the LLM stays as it is")
    lora_alpha: float = Field(16.0, gt=0)
    lora_targets: tuple[str, ...] = Field(("q_proj", "v_proj"), description="LLM modules that get adapters")
    checkpoint_every: int = Field(200, ge=1, description="steps between checkpoints")
    cache_dir: Path = Field(Path("cache/mtst"), description="runs live in <cache_dir>/<config hash>/")
    num_threads: int | None = Field(None, ge=1, description="torch threads (per process); None: torch's default "
                                    "(1 with processes > 1)")
    processes: int = Field(
        1, ge=1, description="CPU: train in this many processes (DDP over gloo through `accelerate launch`, both "
        "stages split over them), the run read back from cache_dir; on 2 cores 2 processes of 1 thread train "
        "faster than 1 of 2 threads (docs/mtst.md); 1: in this process; on a GPU, always in this process",
    )
    progress: bool = True


class MTSTInferConfig(Section):
    """Batched decoding of forward and reverse texts."""

    backend: Literal["transformers", "vllm"] = "transformers"
    num_beams: int = Field(1, ge=1, description="1: greedy; >1: beam search (transformers backend only)")
    max_new_tokens: int = Field(32, ge=1)
    batch_size: int = Field(64, ge=1, description="images per vision pass and texts per decode batch")
    static_cache: bool = Field(True, description="greedy transformers decoding: static KV cache, fixed batch shape")
    device: str = Field("auto", description="auto: cuda when present, else cpu")
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    vllm_gpu_memory_utilization: float = Field(
        0.3, gt=0, le=1, description="vLLM memory share; on CPU it is a share of RAM, keep <= 0.3"
    )

    @model_validator(mode="after")
    def _beams(self):
        if self.backend == "vllm" and self.num_beams > 1:
            raise ValueError("infer.num_beams > 1 needs infer.backend=transformers (vLLM decodes greedy here)")
        return self


class MTSTEvalConfig(Section):
    """Exact-accuracy check on held-out ShapesWorld pairs."""

    n_pairs: int = Field(1000, ge=1)
    seed: int = Field(10_000, description="must differ from data.seed (held out)")
    pairs: Literal["families", "random"] = Field(
        "families", description="families: pairs within ShapesWorld families, as the demo mines them; "
        "random: pairs 1 to data.max_edits edits apart, like the seed set",
    )


class MTSTConfig(Section):
    """The MTST generator section: model, seed set, training, inference, evaluation."""

    model: MTSTModelConfig = MTSTModelConfig()
    data: MTSTDataConfig = MTSTDataConfig()
    train: MTSTTrainConfig = MTSTTrainConfig()
    infer: MTSTInferConfig = MTSTInferConfig()
    eval: MTSTEvalConfig = MTSTEvalConfig()

    @model_validator(mode="after")
    def _held_out(self):
        if self.eval.seed == self.data.seed:
            raise ValueError(f"eval.seed={self.eval.seed} equals data.seed: evaluation pairs must be held out")
        return self

    @model_validator(mode="after")
    def _no_silent_shapesworld_finetune(self):
        # An InstructBLIP checkpoint fine-tuned on ShapesWorld pairs writes ShapesWorld texts for photos:
        # such a config must name its seed set (data.kind) rather than fall back to the default.
        if self.model.pretrained and not is_mtst_dir(self.model.pretrained) and "kind" not in self.data.model_fields_set:
            raise ValueError(
                f"data.kind is missing: model.pretrained={self.model.pretrained!r} is an InstructBLIP checkpoint, "
                "which is fine-tuned on the seed set; name it (data.kind: cirr | fashioniq | shards with data.path, "
                "or data.kind: shapesworld)")
        if self.train.lora_rank and not self.model.pretrained:
            raise ValueError("train.lora_rank needs model.pretrained (LoRA adapts a checkpoint's frozen LLM)")
        return self

    def train_hash(self) -> str:
        """Hash of what changes the trained weights (model, data, train; not paths or progress)."""
        how = {"cache_dir", "progress", "num_threads", "processes", "checkpoint_every"}  # where and how, not what
        train = self.train.model_dump(mode="json", exclude=how)
        data = self.data.model_dump(mode="json")
        for added in (_TRAIN_ADDED, _DATA_ADDED):  # options added later hash as before while they change nothing
            part = train if added is _TRAIN_ADDED else data
            for k, neutral in added.items():
                if part[k] == (list(neutral) if isinstance(neutral, tuple) else neutral):
                    del part[k]
        d = {"arch": MTST_ARCH, "model": self.model.model_dump(mode="json"), "data": data, "train": train}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def is_mtst_dir(path: str | Path) -> bool:
    """Whether ``path`` is a folder saved by ``MTSTGenerator.save_pretrained`` (else: an InstructBLIP checkpoint)."""
    return (Path(path) / "mtst_config.json").is_file()  # model.META_FILE (the model module needs no pydantic)


def load_mtst_config(path: str | Path | None) -> MTSTConfig:
    """Read the section from YAML: top level, under ``mtst:`` or under ``generator.mtst:``.

    A missing file, a bad key or a bad value is a ConfigError (a ValueError) of one line that names it.
    """
    return load_section(MTSTConfig, path, what="MTST config", under=("generator.mtst", "mtst"))
