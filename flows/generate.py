"""Prefect flow: mine -> prepare -> runtime -> finalize, with retries and a summary artifact.

Runs with no server by default (Prefect's temporary local server); set PREFECT_API_URL to report
to a real one. The steps live in pipeline.job.generate; this file only orders them.
"""
from __future__ import annotations

from pipeline.env import set_defaults

set_defaults()  # before Prefect is imported

from prefect import flow, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from pipeline.job import generate as steps
from pipeline.job.config import RunConfig, load_config


@task(name="mine-pairs", cache_policy=NO_CACHE)
def mine_task(cfg: RunConfig) -> steps.Plan:
    return steps.plan(cfg)


@task(name="prepare-stages", retries=1, cache_policy=NO_CACHE)
def prepare_task(cfg: RunConfig, plan: steps.Plan) -> steps.Plan:
    return steps.prepare(cfg, plan)


# Units already committed are skipped, so a retry only redoes the units in flight.
@task(name="run-stages", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def run_task(cfg: RunConfig, plan: steps.Plan, executor: str) -> dict:
    return steps.run_units(cfg, plan, executor=executor)


@task(name="finalize", cache_policy=NO_CACHE)
def finalize_task(cfg: RunConfig, plan: steps.Plan) -> dict:
    return steps.finalize_run(cfg, plan)


@task(name="quality-report", cache_policy=NO_CACHE)
def report_task(cfg: RunConfig) -> str:
    from pipeline import console
    from pipeline.report import write_report

    with console.Phase("report", on=cfg.runtime.progress) as phase:
        index = write_report(cfg.dataset_dir)
        phase.note(str(index))
    return str(index.resolve())


def _publish(cfg: RunConfig, manifest: dict, run: dict, report: str) -> None:
    from pipeline.report import funnel_table

    rows = manifest["rows"]
    table = [{"stage": s["stage"], "in": s["in"], "out": s["out"], "dropped": s["rejected"]}
             for s in funnel_table(manifest)]
    create_table_artifact(key=f"{_key(cfg.name)}-counts", table=table, description="rows per stage")
    create_link_artifact(key=f"{_key(cfg.name)}-report", link=f"file://{report}", link_text="quality report",
                         description="counts per stage, rejection reasons, score histograms, sample grids")
    reasons = "\n".join(f"| `{k}` | {v} |" for k, v in manifest["reject_reasons"].items()) or "| (none) | 0 |"
    create_markdown_artifact(key=f"{_key(cfg.name)}-summary", markdown=f"""# {cfg.name}

Output: `{cfg.dataset_dir.resolve()}`; quality report: `{report}` ({manifest['state']}, {manifest['units_committed']}/{manifest['units_total']} units;
this run wrote {run['units_written']}, skipped {run['units_skipped']} already committed)

Rows in {rows['in']} = kept {rows['kept']} + rejected {rows['rejected']}; per split: {rows['per_split']}

| rejection reason | rows |
|---|---|
{reasons}
""")


def _key(name: str) -> str:
    # Artifact keys allow lowercase letters, digits and dashes only.
    return "".join(c if c.isalnum() else "-" for c in name.lower())


@flow(name="cirforge-generate", log_prints=True)
def generate_flow(config_path: str, executor: str = "ray", overrides: dict | None = None) -> dict:
    """Generate a triplet dataset from a run config; returns its manifest."""
    cfg = load_config(config_path, overrides)
    done = steps.complete_manifest(cfg)
    if done is not None:
        print(f"{cfg.dataset_dir} is complete ({done['units_total']} units committed): nothing to do")
        return done
    # 1. mine pairs and cut them into units
    plan = mine_task(cfg)
    # 2. train (or load) the text generator; write the negatives' candidate pool
    plan = prepare_task(cfg, plan)
    # 3. run the stages over every uncommitted unit
    run = run_task(cfg, plan, executor)
    # 4. write the manifest and the dataset card
    manifest = finalize_task(cfg, plan)
    # 5. the quality report, linked as an artifact
    _publish(cfg, manifest, run, report_task(cfg))
    return manifest
