"""The steps of the nightly retrain (flows/nightly.py orders them; flows/train.py reuses train/evaluate):

1. ``night_overrides``: tonight's dataset name and seed (new pairs, texts and negatives every night);
2. ``train_candidate``: pretrain on tonight's shards, then (optionally) finetune on the seed set;
3. ``load_benchmark``: a fixed benchmark - a dataset folder's split, or for ShapesWorld runs a held-out
   ShapesWorld benchmark kept in the registry (its own seed; images of tonight's shards excluded);
4. ``judge``: evaluate the candidate and the current model on that benchmark, decide, register, promote.
"""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from pipeline.config_base import Section, load_section
from pipeline.seeding import derive_seed
from trainers.config import EvalConfig, TrainConfig
from trainers.registry import PROMOTE_ON, Decision, Registry, decide


class ShapesWorldBenchmarkConfig(Section):
    """The registry's own ShapesWorld benchmark (built once, then fixed across nights)."""

    references: int = Field(60, ge=1)
    targets_per_reference: int = Field(4, ge=1)
    seed: int = Field(9000, description="a seed no generation uses")
    image_size: int = Field(64, ge=16)


class NightlyConfig(Section):
    """What the nightly trains and how it judges; defaults: tiny model, ShapesWorld benchmark."""

    registry: Path | None = Field(None, description="registry folder; default <out_dir of the run>/registry")
    pretrain: TrainConfig = Field(
        TrainConfig.model_validate({"stage": "ptha", "optim": {"max_steps": 200, "lr": 1e-3, "weight_decay": 0.0},
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
    return load_section(NightlyConfig, path, overrides, source="nightly config", merge_defaults=True)


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


def train_candidate(dataset_dir: str | Path, ncfg: NightlyConfig, work_dir: str | Path) -> Path:
    """Pretrain on the shards (then finetune when configured); returns the final model folder."""
    model_dir = pretrain_step(dataset_dir, ncfg, work_dir)
    return finetune_step(model_dir, ncfg, work_dir) if ncfg.finetune is not None else model_dir


def pretrain_step(dataset_dir: str | Path, ncfg: NightlyConfig, work_dir: str | Path) -> Path:
    """Pretrain from scratch on the shards into ``<work_dir>/pretrain``; returns the model folder."""
    from trainers.loop import pretrain

    cfg = ncfg.pretrain.model_copy(update={"out_dir": Path(work_dir) / "pretrain", "init_from": None})
    return pretrain(dataset_dir, cfg).model_dir


def finetune_step(model_dir: str | Path, ncfg: NightlyConfig, work_dir: str | Path) -> Path:
    """Finetune ``model_dir`` on ``finetune_dir`` into ``<work_dir>/finetune`` (a config with a
    ``finetune`` section, which the config checks has a ``finetune_dir``); returns the model folder."""
    from trainers.loop import finetune

    cfg = ncfg.finetune.model_copy(update={"out_dir": Path(work_dir) / "finetune", "init_from": Path(model_dir)})
    return finetune(ncfg.finetune_dir, cfg).model_dir


def load_benchmark(ncfg: NightlyConfig, registry: Registry, run_cfg=None, dataset_dir: str | Path | None = None):
    """The fixed benchmark the candidate and the current model are both judged on."""
    from trainers.evaluate import benchmark_from_dataset, benchmark_from_rows

    if ncfg.benchmark_dir is not None:
        return benchmark_from_dataset(ncfg.benchmark_dir, ncfg.benchmark_split)
    if run_cfg is None or run_cfg.source.kind != "shapesworld":
        raise ValueError("nightly.benchmark_dir is not set and the run is not ShapesWorld: give a dataset folder "
                         "with a held-out split to judge models on (nightly.benchmark_dir, nightly.benchmark_split)")
    path = registry.root / "benchmark" / "shapesworld.parquet"
    if not path.exists():
        from pipeline.shapesworld.sets.retrieval import Seen, shapesworld_triplets
        from trainers.data import training_images, write_rows

        b = ncfg.shapesworld_benchmark
        seen = Seen(image_size=b.image_size)
        if dataset_dir is not None:
            seen = training_images(None, Path(dataset_dir), b.image_size)
        rows = shapesworld_triplets(b.references, b.targets_per_reference, seed=b.seed, image_size=b.image_size,
                                    require_negatives=True, exclude=seen, split="test")
        write_rows(rows, path)
    from trainers.data import read_rows

    return benchmark_from_rows(read_rows(path), "registry-shapesworld", root=None)


def evaluate_dir(model_dir: str | Path, benchmark, ecfg: EvalConfig) -> dict[str, float]:
    from trainers.evaluate import evaluate

    return evaluate(Path(model_dir), benchmark, ecfg)


def judge(candidate_dir: str | Path, benchmark, registry: Registry, ncfg: NightlyConfig,
          info: dict[str, Any] | None = None) -> dict[str, Any]:
    """Evaluate the candidate and the current model on ``benchmark``; register the candidate; promote it
    when ``promote_on`` metrics hold. Returns the decision, both metric sets and the version names."""
    new = evaluate_dir(candidate_dir, benchmark, ncfg.eval)
    current = registry.current()
    old = evaluate_dir(registry.model_dir(current), benchmark, ncfg.eval) if current else None
    decision: Decision = decide(new, old, ncfg.promote_on, ncfg.tolerance)
    version = registry.register(candidate_dir, new, {
        **(info or {}), "benchmark": benchmark.name, "compared_with": current, "current_metrics": old,
        "decision": decision.to_dict(),
    })
    if decision.promote:
        registry.promote(version)
    return {"version": version, "promoted": decision.promote, "reasons": decision.reasons,
            "previous": current, "candidate_metrics": new, "current_metrics": old,
            "current": registry.current()}


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
