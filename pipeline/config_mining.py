"""Config sections for sources' options, the image embedder and pair mining (wired into RunConfig)."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from pipeline.config_base import Section

Strategy = Literal["similarity", "label", "caption"]


class SourceOptions(Section):
    """Per-kind options of a source (pipeline/sources); each kind reads only its own."""

    image_column: str = Field("image", description="parquet: the image column (HF Image struct, bytes or path)")
    id_column: str | None = Field(None, description="parquet: the id column; default '<file>:<row>'")
    label_column: str | None = Field(None, description="parquet: the label column; default label/category/class if present")
    caption_column: str | None = Field(None, description="parquet: the caption column; default caption/text if present")
    split: str = Field("train", description="cirr / fashioniq: which split's files to read (cirr: train, val, test1)")
    categories: list[str] | None = Field(None, description="fashioniq: categories to read; default all found")
    max_pixels: int | None = Field(None, ge=1, description="skip larger images (decompression bomb guard); default Pillow's")
    min_side: int = Field(8, ge=1, description="skip images with a side shorter than this many pixels (1x1 spacers, icons)")


class TinyClipConfig(Section):
    """The embedded default: a tiny CLIP trained from scratch on ShapesWorld (image vs caption, edit text vs image change)."""

    image_size: int = Field(63, ge=16, description="the vision tower's input side (the image processor resizes to it); "
                                                   "63 with 21 px patches: one patch per cell of ShapesWorld's 3x3 grid")
    patch_size: int = Field(21, ge=2)
    render_size: int = Field(64, ge=8, description="side ShapesWorld's training (and measurement) images are rendered at")
    hidden_size: int = Field(96, ge=16, description="width of both towers")
    layers: int = Field(2, ge=1, description="transformer layers per tower")
    heads: int = Field(4, ge=1)
    projection_dim: int = Field(64, ge=8, description="embedding size")
    families: int = Field(800, ge=10, description="ShapesWorld families to train on (x 5 images each)")
    steps: int = Field(1000, ge=1, description="optimizer steps")
    batch_size: int = Field(128, ge=8)
    edit_batch: int = Field(64, ge=0, description="family pairs per step for the edit losses (modification text "
                                                   "vs image change); 0: captions only")
    lr: float = Field(2e-3, gt=0)
    seed: int = 0


class EmbedderConfig(Section):
    """The CLIP image/text encoder used for mining (and later by filters)."""

    checkpoint: str | None = Field(None, description="CLIP id or local folder (safetensors); none = the tiny ShapesWorld CLIP, trained once and cached")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: cuda when available")
    dtype: Literal["float32", "float16", "bfloat16"] = Field("float32", description="model weights dtype (float32 on CPU)")
    batch_size: int = Field(64, ge=1, description="images per forward pass")
    tiny: TinyClipConfig = TinyClipConfig()

    @field_validator("checkpoint")
    @classmethod
    def _local_checkpoint_exists(cls, v: str | None) -> str | None:
        from pipeline.checkpoints import validate_checkpoint_field

        return validate_checkpoint_field("embedder.checkpoint", v)


class MiningConfig(Section):
    """How (reference, target) pairs are found; strategies are unioned, first listed wins a tie."""

    strategies: list[Strategy] = Field(["similarity"], min_length=1,
                                       description="similarity: embedding band; label: same label; caption: captions one word apart")
    k: int = Field(4, ge=1, description="at most k targets per reference, per strategy")
    sim_low: float = Field(0.5, ge=-1, le=1, description="similarity band: lowest cosine similarity kept")
    sim_high: float = Field(0.99, ge=-1, le=1, description="similarity band: highest cosine similarity kept (CLIP ViT-L: about 0.95)")
    near_dup: float = Field(0.995, ge=-1, le=1, description="pairs above this similarity are near-duplicates, never kept (CLIP ViT-L: about 0.98); 1.0 turns the check off (label/caption mining then needs no embedder)")
    pick: Literal["random", "nearest"] = Field("random", description="label/caption: which k of the candidates (nearest needs embeddings)")
    allow_mirrored: bool = Field(False, description="keep both (a, b) and (b, a)")
    block_size: int = Field(4096, ge=16, description="queries (and keys) per block of the exact search; memory ~ block_size^2 x 4 bytes")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="exact search's tile products: bfloat16 finds candidates that a float32 rerank with a "
        "proven error bound confirms (same pairs, ~3x faster matmuls where the CPU has bf16 units); "
        "auto: bfloat16 on a CPU with AVX512-BF16 or AMX, else float32",
    )

    @model_validator(mode="after")
    def _band(self):
        if self.sim_low > self.sim_high:
            raise ValueError(f"mining.sim_low={self.sim_low} is above mining.sim_high={self.sim_high}")
        return self
