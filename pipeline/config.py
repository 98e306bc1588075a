"""The ground floor's config sections: the source, ShapesWorld, splits, shards, runtime.

The run config that assembles them with every family's section is ``pipeline.job.config.RunConfig``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from pipeline.config_base import ConfigError, Section
from pipeline.config_mining import SourceOptions

__all__ = ["ConfigError", "RuntimeConfig", "ShapesWorldConfig", "ShardConfig", "SourceConfig", "SplitConfig"]


class ShapesWorldConfig(Section):
    """The embedded procedural world (pipeline/shapesworld)."""

    image_size: int = Field(64, ge=16, le=1024, description="rendered image side in pixels")
    families: int = Field(200, ge=1, description="base scenes in the pool; each gets variants")
    variants_per_family: int = Field(4, ge=0, description="one-edit variants rendered per base scene")
    max_objects: int = Field(4, ge=1, le=4, description="objects per scene: 1 to this many")


class SourceConfig(Section):
    """Where the image pool comes from."""

    kind: Literal["shapesworld", "folder", "parquet", "cirr", "fashioniq"] = Field(
        "shapesworld", description="shapesworld (embedded), a folder of images, a Parquet table, a CIR dataset")
    path: Path | None = Field(None, description="folder / table / dataset root (not for shapesworld)")
    shapesworld: ShapesWorldConfig = ShapesWorldConfig()
    options: SourceOptions = SourceOptions()

    @model_validator(mode="after")
    def _path_needed(self):
        if self.kind != "shapesworld" and self.path is None:
            raise ValueError(f"source.kind={self.kind!r} needs source.path (a folder or file)")
        if self.path is not None and not self.path.exists():
            raise ValueError(f"source.path={str(self.path)!r} does not exist: give an existing file or folder")
        return self


class SplitConfig(Section):
    """Share of images per split (ShapesWorld: of families), drawn by a seeded hash of the id.

    Pairs are mined within a split, so no image is in two splits (docs/shard-contract.md)."""

    train: float = Field(0.9, ge=0, le=1, description="share of images (ShapesWorld: families) in train")
    val: float = Field(0.05, ge=0, le=1, description="share of images (ShapesWorld: families) in val")
    test: float = Field(0.05, ge=0, le=1, description="share of images (ShapesWorld: families) in test")

    @model_validator(mode="after")
    def _sum_to_one(self):
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"splits must add up to 1.0, got {total:g}")
        return self


class ShardConfig(Section):
    """How rows are cut into units (one committed shard per unit) and written."""

    rows_per_unit: int = Field(256, ge=1, description="pairs per work unit; one shard per unit and split")
    batch_size: int = Field(64, ge=1, description="rows per batch handed to each stage")
    row_group_size: int = Field(100, ge=1, description="Parquet row group size (HF uses 100 for images)")
    embed_images: bool = Field(True, description="embed image bytes; false writes paths only")
    compression: Literal["zstd", "snappy", "none"] = Field("zstd", description="Parquet compression codec")


class RuntimeConfig(Section):
    """Where the stages run."""

    ray_address: str | None = Field(None, description="join this Ray cluster; else RAY_ADDRESS, else local")
    num_cpus: int | None = Field(None, ge=1, description="CPUs for a local Ray; default all")
    gpu_actors: int = Field(1, ge=1, description="actors per GPU stage (text generator, editor, embedder), "
                                                 "one GPU each: set to the GPU workers of the cluster")
    progress: bool = Field(True, description="show progress bars")
