"""The train steps of the nightly retrain and of the train flow (flows/nightly.py and flows/train.py
order them; trainers/nightly.py holds their config):

- ``train_candidate``: pretrain on tonight's shards (``pretrain_step``), then (optionally) finetune on
  the seed set (``finetune_step``);
- ``load_benchmark``: a fixed benchmark - a dataset folder's split, or for ShapesWorld runs a held-out
  ShapesWorld benchmark kept in the registry (its own seed; images of tonight's shards excluded);
- ``judge``: evaluate the candidate and the current model on that benchmark (``evaluate_dir``), decide,
  register, promote.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from trainers.config import EvalConfig
from trainers.nightly import NightlyConfig
from trainers.registry import Decision, Registry, decide


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
