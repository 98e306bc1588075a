"""Run configuration: one pydantic model, loaded from YAML, defaults here and nowhere else.

Every random choice in a run takes its seed from ``RunConfig.seed`` (combined with a unit id).
Errors name the key, the value given and what is allowed, on one line.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from filters.config import FiltersConfig
from generators.config import MTSTConfig
from generators.negatives_config import NegativesConfig
from pipeline.config_base import Section, format_validation_error, set_dotted
from pipeline.config_mining import EmbedderConfig, MiningConfig, SourceOptions


class ConfigError(ValueError):
    """A config that cannot be used; the message is one line that names the key and the fix."""


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


class GeneratorConfig(Section):
    """Who writes the modification texts (forward, and reverse for PTHA)."""

    kind: Literal["mtst", "annotator"] = Field(
        "mtst", description="mtst: the learned MTST generator (trained on the seed set, cached by hash); "
                            "annotator: ShapesWorld's ground-truth annotator (exact texts, no model)")
    mtst: MTSTConfig = Field(MTSTConfig(), description="the MTST generator; a run trains it under "
                                                      "<cache_dir>/mtst (generator.mtst.train.cache_dir is for "
                                                      "`python -m generators.train_mtst` alone)")


class RuntimeConfig(Section):
    """Where the stages run."""

    ray_address: str | None = Field(None, description="join this Ray cluster; else RAY_ADDRESS, else local")
    num_cpus: int | None = Field(None, ge=1, description="CPUs for a local Ray; default all")
    gpu_actors: int = Field(1, ge=1, description="actors per GPU stage (text generator, editor, embedder), "
                                                 "one GPU each: set to the GPU workers of the cluster")
    progress: bool = Field(True, description="show progress bars")


class RunConfig(Section):
    """One generation run."""

    name: str = Field("shapesworld-demo", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
                      description="dataset name: the folder under out_dir (letters, digits, . _ -)")
    out_dir: Path = Field(Path("out"), description="where datasets are written")
    cache_dir: Path = Field(Path("cache"), description="trained tiny models, keyed by config hash")
    seed: int = Field(0, description="run seed: every random choice derives from it and an id")
    source: SourceConfig = SourceConfig()
    embedder: EmbedderConfig = EmbedderConfig()
    mining: MiningConfig = MiningConfig()
    splits: SplitConfig = SplitConfig()
    shards: ShardConfig = ShardConfig()
    generator: GeneratorConfig = GeneratorConfig()
    negatives: NegativesConfig = NegativesConfig()
    filters: FiltersConfig = FiltersConfig()
    runtime: RuntimeConfig = RuntimeConfig()

    @property
    def dataset_dir(self) -> Path:
        return self.out_dir / self.name

    @model_validator(mode="after")
    def _generator_fits_source(self):
        g = self.generator
        if g.kind == "mtst" and g.mtst.model.pretrained is None and self.source.kind != "shapesworld":
            raise ValueError(
                f"generator.kind='mtst' without generator.mtst.model.pretrained trains the tiny ShapesWorld "
                f"generator, which cannot describe source.kind={self.source.kind!r} images: set "
                "generator.mtst.model.pretrained to an MTST or InstructBLIP checkpoint")
        return self

    def mtst_config(self) -> MTSTConfig:
        """The generator section as a run uses it: trained models live under ``<cache_dir>/mtst``."""
        m = self.generator.mtst.model_copy(deep=True)
        m.train.cache_dir = self.cache_dir / "mtst"
        m.train.progress = self.runtime.progress
        return m

    def config_hash(self) -> str:
        """Hash of everything that changes rows (not where they are written, not runtime)."""
        d = self.model_dump(mode="json", exclude={
            "out_dir": True, "cache_dir": True, "runtime": True,
            "generator": {"mtst": {"train": {"cache_dir", "progress", "num_threads", "checkpoint_every"},
                                   "infer": {"device", "batch_size", "vllm_gpu_memory_utilization"}}}})
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def parse_config(data: dict, source: str = "config") -> RunConfig:
    try:
        return RunConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source, RunConfig)) from None


def load_config(path: str | Path, overrides: dict | None = None) -> RunConfig:
    """Load a YAML run config; relative paths inside it are taken from the current directory."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} not found: pass an existing YAML file (e.g. configs/demo.yaml)")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(data).__name__}")
    return parse_config(set_dotted(data, overrides), str(path))
