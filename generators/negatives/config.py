"""Config sections of the FBCIR hard-negative stage and its image editors (defaults live here)."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from pipeline.config_base import Section

# Small edits a photo can take without doing what a modification text asks; the stage picks one
# whose text embedding is far from the modification text (photos only).
DEFAULT_PHOTO_SIDE_EDITS = (
    "make the lighting warmer", "make the lighting cooler", "make it slightly brighter",
    "make it slightly darker", "add a soft shadow", "make the background a little blurry",
    "add a light film grain", "make the colors a bit more saturated",
)


class InstructPix2PixConfig(Section):
    """The diffusers InstructPix2Pix editor for photos."""

    model: str = Field("timbrooks/instruct-pix2pix", description="hub id or local folder (safetensors only)")
    revision: str | None = Field(None, description="hub revision to pin; recorded in the editor id")
    device: Literal["auto", "cuda", "cpu"] = Field("auto", description="auto: cuda when present")
    dtype: Literal["float16", "bfloat16", "float32"] = Field("float16", description="weights dtype on cuda (cpu: float32)")
    steps: int = Field(20, ge=1, le=200, description="denoising steps")
    guidance_scale: float = Field(7.5, ge=1.0, description="text guidance")
    image_guidance_scale: float = Field(1.5, ge=1.0, description="image guidance")
    resolution: int = Field(512, ge=64, le=2048, description="edit resolution (square; multiple of 8)")
    batch_size: int = Field(16, ge=1, description="edits per UNet call")
    channels_last: bool = Field(False, description="UNet/VAE in channels_last (cuda; measured slower in eager)")
    compile_unet: bool = Field(False, description="torch.compile UNet and VAE decode (cuda; +34% measured, "
                                                  "the first batch compiles for about a minute)")
    compile_mode: str = Field("default", description="torch.compile mode")
    fuse_qkv: bool = Field(True, description="fuse the attention q/k/v projections (cuda)")


def _same_image_cut(kind: str, anchor: str):
    """A per-kind, per-anchor near-duplicate cut (photos): unset falls back to ``near_duplicate``."""
    article = "an" if kind[0] in "aeiou" else "a"
    return Field(None, ge=-1, le=1.01, description=f"photos: {article} {kind} negative with cos to the {anchor} at "
                 f"or above this is the {anchor} (unset: near_duplicate; above 1: never)")


class NegativesConfig(Section):
    """FBCIR hard negatives: mined from the pool first, else made with an image edit, always verified."""

    enabled: bool = Field(True, description="add the negatives stage to the job")
    editor: Literal["shapesworld", "instruct_pix2pix", "none"] = Field(
        "shapesworld", description="who makes a negative no mined image fits; none: mined only")
    pool_path: Path | None = Field(None, description="candidate pool file (Parquet from write_pool); "
                                                     "the job writes one under <cache_dir>/negatives-pool/<config hash>.parquet when unset")
    max_candidates: int = Field(128, ge=1, description="pool images tried per triplet (most similar first, else a seeded sample)")
    max_image_aligned_edits: int = Field(2, ge=1, le=2, description="ShapesWorld: edits between reference "
                                                                     "and image-aligned negative at most")
    prefer_mined: bool = Field(True, description="take a verified pool image before making an edit")
    text_margin: float = Field(0.0, description="photos: cos(neg,text) - cos(ref,text) above this")
    image_margin: float = Field(0.0, description="photos: cos(tgt,text) - cos(neg,text) above this")
    min_reference_similarity: float = Field(0.6, ge=-1, le=1, description="photos: image-aligned negative's "
                                                                          "cos to the reference at least this")
    near_duplicate: float = Field(0.97, ge=-1, le=1, description="photos: cos at or above this is the same image")
    text_aligned_max_target_similarity: float | None = _same_image_cut("text-aligned", "target")
    text_aligned_max_reference_similarity: float | None = _same_image_cut("text-aligned", "reference")
    text_aligned_min_target_lead: float = Field(
        0.0, ge=-2, le=2, description="photos: a text-aligned negative's cos(neg,tgt) - cos(neg,ref) above this "
                                      "(nearer the target than the reference: the change is in it; -2: off)")
    image_aligned_max_reference_similarity: float | None = _same_image_cut("image-aligned", "reference")
    image_aligned_max_target_similarity: float | None = _same_image_cut("image-aligned", "target")
    image_aligned_max_target_lead: float = Field(
        0.0, ge=-2, le=2, description="photos: an image-aligned negative's cos(neg,tgt) - cos(neg,ref) below this "
                                      "(not nearer the target than the reference: the change is not in it; 2: off)")
    side_edits: tuple[str, ...] = Field(DEFAULT_PHOTO_SIDE_EDITS, description="photos: instructions for "
                                                                              "edited image-aligned negatives")
    side_edit_max_text_similarity: float = Field(0.8, ge=-1, le=1, description="photos: a side edit's text "
                                                                               "cos to the modification below this")
    reject_missing: bool = Field(True, description="reject a row when a negative cannot be found or verified")
    instruct_pix2pix: InstructPix2PixConfig = InstructPix2PixConfig()
