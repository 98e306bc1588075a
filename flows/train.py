"""Prefect flow: pretrain on a dataset's shards, finetune (optional), evaluate, with a metrics artifact.

Runs with no server by default (Prefect's temporary local server); set PREFECT_API_URL to report to a
real one. The steps live in trainers/ (steps, loop, evaluate; the config in nightly); this file only
orders them.
"""
from __future__ import annotations

from pipeline.env import set_defaults

set_defaults()  # before Prefect is imported

from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from trainers import nightly, steps


@task(name="pretrain", cache_policy=NO_CACHE)
def pretrain_task(dataset_dir: str, ncfg: nightly.NightlyConfig, out_dir: str) -> str:
    return str(steps.pretrain_step(dataset_dir, ncfg, out_dir))


@task(name="finetune", cache_policy=NO_CACHE)
def finetune_task(model_dir: str, ncfg: nightly.NightlyConfig, out_dir: str) -> str:
    return str(steps.finetune_step(model_dir, ncfg, out_dir))


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate_task(model_dir: str, benchmark_dir: str, ncfg: nightly.NightlyConfig) -> dict:
    from trainers.evaluate import benchmark_from_dataset

    return steps.evaluate_dir(model_dir, benchmark_from_dataset(benchmark_dir, ncfg.benchmark_split), ncfg.eval)


def check_folders(dataset_dir: str, ncfg: nightly.NightlyConfig) -> None:
    from trainers.retrieval import check_dataset

    check_dataset(dataset_dir, ncfg.pretrain.data.split)
    if ncfg.finetune is not None:
        check_dataset(ncfg.finetune_dir, ncfg.finetune.data.split)
    check_dataset(ncfg.benchmark_dir or dataset_dir, ncfg.benchmark_split)


@flow(name="cirforge-train", log_prints=True)
def train_flow(dataset_dir: str, out_dir: str = "out/train", config: str | None = None,
               overrides: dict | None = None) -> dict:
    """Pretrain on ``dataset_dir`` (split ``pretrain.data.split``), finetune on ``finetune_dir`` when the
    config has a ``finetune`` section, evaluate on ``benchmark_dir`` (default: the dataset's test split).
    ``config``: a YAML file of trainers.nightly.NightlyConfig keys; ``overrides``: dotted keys."""
    ncfg = nightly.load_nightly_config(config, overrides)
    # 0. every folder a step reads, before anything trains (a CIRR / FashionIQ / CIRCO folder is read as such)
    check_folders(dataset_dir, ncfg)
    # 1. pretrain on the shards
    model_dir = pretrain_task(dataset_dir, ncfg, out_dir)
    # 2. finetune on the seed set
    if ncfg.finetune is not None:
        model_dir = finetune_task(model_dir, ncfg, out_dir)
    # 3. evaluate
    bench = str(ncfg.benchmark_dir or dataset_dir)
    metrics = evaluate_task(model_dir, bench, ncfg)
    nightly.write_json(Path(out_dir) / "metrics.json", metrics)
    table = [{"metric": k, "value": round(v, 2)} for k, v in metrics.items()]
    create_table_artifact(key="cirforge-train-metrics", table=table, description=f"{model_dir} on {bench}")
    create_markdown_artifact(key="cirforge-train-summary", markdown=f"# Training\n\nModel: `{model_dir}`\n\n"
                             f"Benchmark: `{bench}` ({ncfg.benchmark_split})\n\n| metric | value |\n|---|---:|\n"
                             + "\n".join(f"| {r['metric']} | {r['value']} |" for r in table) + "\n")
    return {"model_dir": model_dir, "metrics": metrics}
