"""The run configuration: one pydantic model that assembles every family's section, loaded from YAML, defaults here and nowhere else.

Every random choice in a run takes its seed from ``RunConfig.seed`` (combined with a unit id).
Errors name the key, the value given and what is allowed, on one line.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from filters.config import FiltersConfig
from generators.mtst.config import MTSTConfig
from generators.negatives.config import NegativesConfig
from pipeline.config import (ConfigError, RuntimeConfig, ShardConfig, SourceConfig, SplitConfig)
from pipeline.config_base import Section, load_section, validate_section
from pipeline.config_mining import EmbedderConfig, MiningConfig


class GeneratorConfig(Section):
    """Who writes the modification texts (forward, and reverse for PTHA)."""

    kind: Literal["mtst", "annotator"] = Field(
        "mtst", description="mtst: the learned MTST generator (trained on the seed set, cached by hash); "
                            "annotator: ShapesWorld's ground-truth annotator (exact texts, no model)")
    mtst: MTSTConfig = Field(MTSTConfig(), description="the MTST generator; a run trains it under "
                                                      "<cache_dir>/mtst (generator.mtst.train.cache_dir is for "
                                                      "`python -m generators.mtst.train` alone)")


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
            "generator": {"mtst": {"train": {"cache_dir", "progress", "num_threads", "processes", "checkpoint_every"},
                                   "infer": {"device", "batch_size", "vllm_gpu_memory_utilization"}}}})
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def parse_config(data: dict, source: str = "config") -> RunConfig:
    return validate_section(RunConfig, data, source)


def load_config(path: str | Path, overrides: dict | None = None) -> RunConfig:
    """Load a YAML run config; relative paths inside it are taken from the current directory."""
    if not Path(path).is_file():
        raise ConfigError(f"config file {str(path)!r} not found: pass an existing YAML file (e.g. configs/demo.yaml)")
    return load_section(RunConfig, path, overrides)
