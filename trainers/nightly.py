"""The nightly retrain's config and glue (flows/nightly.py orders the steps; trainers/steps.py holds the
train, benchmark and judge steps):

- ``NightlyConfig`` / ``load_nightly_config``: what the nightly trains and how it judges;
- ``night_overrides``: tonight's dataset name and seed (new pairs, texts and negatives every night);
- ``registry_of``: the model registry of a run;
- ``metrics_table`` / ``summary_markdown`` / ``write_json``: the night's result as artifacts and a file.
"""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from pipeline.config_base import Section, load_section
from pipeline.seeding import derive_seed
from trainers.config import SHAPESWORLD_TINY, EvalConfig, TrainConfig
from trainers.registry import PROMOTE_ON, Registry


class ShapesWorldBenchmarkConfig(Section):
    """The registry's own ShapesWorld benchmark (built once, then fixed across nights)."""

    references: int = Field(100, ge=1, description="as the reproduction table's benchmark (400 queries, 500 images)")
    targets_per_reference: int = Field(4, ge=1)
    seed: int = Field(9000, description="a seed no generation uses")
    image_size: int = Field(64, ge=16)


class NightlyConfig(Section):
    """What the nightly trains and how it judges; defaults: the reproduction table's tiny model and schedule
    (``SHAPESWORLD_TINY``), judged on the table's ShapesWorld benchmark."""

    registry: Path | None = Field(None, description="registry folder; default <out_dir of the run>/registry")
    pretrain: TrainConfig = Field(
        TrainConfig.model_validate({"stage": "ptha", "model": {"tiny": SHAPESWORLD_TINY.model_dump()},
                                    "loss": {"t2t": 0.0},
                                    "optim": {"max_steps": 300, "lr": 5e-4, "weight_decay": 0.0, "warmup_steps": 30,
                                              "schedule": "cosine"},
                                    "data": {"batch_size": 32}, "progress": False}),
        description="training on tonight's shards (out_dir and init_from are set by the nightly)")
    finetune: TrainConfig | None = Field(None, description="then finetune on finetune_dir (e.g. the annotated seed set)")
    finetune_dir: Path | None = Field(None, description="a cirforge dataset folder of annotated triplets (split train)")
    benchmark_dir: Path | None = Field(None, description="a cirforge dataset folder to judge on; default: "
                                                         "the registry's ShapesWorld benchmark (ShapesWorld runs only)")
    benchmark_split: str = "test"
    shapesworld_benchmark: ShapesWorldBenchmarkConfig = ShapesWorldBenchmarkConfig()
    eval: EvalConfig = EvalConfig()
    promote_on: tuple[str, ...] = Field(PROMOTE_ON, description="metrics that must not regress")
    tolerance: float = Field(0.0, ge=0, description="allowed drop in points before it counts as a regression")
    vary_seed: bool = Field(True, description="derive tonight's run seed from the night, so each night adds new rows")

    @model_validator(mode="after")
    def _finetune_has_data(self):
        if self.finetune is not None and self.finetune_dir is None:
            raise ValueError("finetune is set but finetune_dir is not: give the seed-set dataset folder")
        return self


def load_nightly_config(path: str | Path | None = None, overrides: dict | None = None) -> NightlyConfig:
    """The defaults, updated key by key from a YAML file, then from ``overrides`` (dotted keys)."""
    return load_section(NightlyConfig, path, overrides, what="nightly config", defaults=True)


def tonight() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d")


def night_overrides(run_cfg, night: str, ncfg: NightlyConfig) -> dict:
    """Generation overrides for tonight: its own dataset folder (and seed, unless ``vary_seed`` is off)."""
    out = {"name": f"{run_cfg.name}-nightly-{night}"}
    if ncfg.vary_seed:
        out["seed"] = derive_seed(run_cfg.seed, "nightly", night) % (2**31)
    return out


def registry_of(ncfg: NightlyConfig, run_cfg) -> Registry:
    return Registry(ncfg.registry if ncfg.registry is not None else Path(run_cfg.out_dir) / "registry")


def metrics_table(result: dict[str, Any], keys=("R@1", "R@5", "R@10", "Rs@1", "hard_R@1")) -> list[dict]:
    """Rows for a Prefect table artifact: one per metric, candidate vs current."""
    new, old = result["candidate_metrics"], result["current_metrics"] or {}
    return [{"metric": k, "candidate": round(new[k], 2) if k in new else None,
             "current": round(old[k], 2) if k in old else None} for k in keys if k in new]


def summary_markdown(result: dict[str, Any], dataset_dir: str | Path | None = None) -> str:
    rows = "\n".join(f"| {r['metric']} | {r['candidate']} | {r['current'] if r['current'] is not None else '-'} |"
                     for r in metrics_table(result))
    verdict = "promoted" if result["promoted"] else "kept the current model"
    return f"""# Nightly: {result['version']} {verdict}

Shards: `{dataset_dir}`; compared with: {result['previous'] or '(none)'}; current now: {result['current']}

| metric | candidate | current |
|---|---:|---:|
{rows}

{chr(10).join('- ' + r for r in result['reasons'])}
"""


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, default=str))
    return path
