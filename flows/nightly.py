"""Prefect flow: generate tonight's shards, train, evaluate against the current model, promote or not.

The candidate is registered as a new version either way (with its metrics and the reasons); the
registry's ``current`` pointer moves only when hard-case R@1 and R@5 (``promote_on``) do not regress
against the current model, both evaluated on the same fixed benchmark tonight. The steps live in
trainers/steps.py, trainers/nightly.py (config and glue) and trainers/registry.py; this file only
orders them.
"""
from __future__ import annotations

from pipeline.env import set_defaults

set_defaults()  # before Prefect is imported


from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows.generate import generate_flow
from pipeline.job.config import load_config
from trainers import nightly, steps


@task(name="train", cache_policy=NO_CACHE)
def train_task(dataset_dir: str, ncfg: nightly.NightlyConfig, work_dir: str) -> str:
    return str(steps.train_candidate(dataset_dir, ncfg, work_dir))


@task(name="evaluate-and-promote", cache_policy=NO_CACHE)
def judge_task(candidate_dir: str, dataset_dir: str, ncfg: nightly.NightlyConfig, run_cfg, night: str) -> dict:
    registry = nightly.registry_of(ncfg, run_cfg)
    bench = steps.load_benchmark(ncfg, registry, run_cfg, dataset_dir)
    return steps.judge(candidate_dir, bench, registry, ncfg,
                       info={"night": night, "dataset": dataset_dir, "run_config_hash": run_cfg.config_hash()})


@flow(name="cirforge-nightly", log_prints=True)
def nightly_flow(generate_config: str, nightly_config: str | None = None, night: str | None = None,
                 executor: str = "ray", overrides: dict | None = None,
                 nightly_overrides: dict | None = None) -> dict:
    """``generate_config``: the run config YAML; ``nightly_config``: a YAML of trainers.nightly.NightlyConfig
    keys (registry, training, benchmark, promotion rule); ``night``: YYYYMMDD (default today, UTC)."""
    night = night or nightly.tonight()
    ncfg = nightly.load_nightly_config(nightly_config, nightly_overrides)
    base = load_config(generate_config, overrides)
    gen_overrides = {**(overrides or {}), **nightly.night_overrides(base, night, ncfg)}
    run_cfg = load_config(generate_config, gen_overrides)
    # 1. generate tonight's shards (the generation flow, as a subflow)
    generate_flow(generate_config, executor=executor, overrides=gen_overrides)
    dataset_dir = str(run_cfg.dataset_dir)
    # 2. train a candidate on them
    registry = nightly.registry_of(ncfg, run_cfg)
    candidate = train_task(dataset_dir, ncfg, str(registry.root / "runs" / night))
    # 3. evaluate it and the current model on the fixed benchmark; register; promote if nothing regresses
    result = judge_task(candidate, dataset_dir, ncfg, run_cfg, night)
    nightly.write_json(registry.root / "runs" / night / "result.json", result)
    create_table_artifact(key="cirforge-nightly-metrics", table=nightly.metrics_table(result),
                          description=f"{result['version']}: candidate vs current")
    create_markdown_artifact(key="cirforge-nightly-summary", markdown=nightly.summary_markdown(result, dataset_dir))
    print(f"{result['version']}: {'promoted' if result['promoted'] else 'not promoted'}; " + "; ".join(result["reasons"]))
    return result
