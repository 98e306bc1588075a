"""Serve one deployment of deploy/prefect.yaml with `prefect.serve` (its entrypoint, schedules, tags).

    python -m tests.deploy.serve deploy/prefect.yaml nightly

Runs until stopped; its runner polls the server named by PREFECT_API_URL and executes the runs
triggered there in subprocesses. Used by tests/deploy/test_nightly_deployment.py.
"""
from __future__ import annotations

import sys
from pathlib import Path

import yaml


def build(prefect_yaml: Path, name: str):
    from prefect.cli.deploy._models import PrefectYamlModel
    from prefect.client.schemas.schedules import CronSchedule
    from prefect.flows import load_flow_from_entrypoint

    model = PrefectYamlModel.model_validate(yaml.safe_load(prefect_yaml.read_text()))
    spec = next((d for d in model.deployments if d.name == name), None)
    if spec is None:
        raise SystemExit(f"{prefect_yaml}: no deployment named {name!r}")
    flow = load_flow_from_entrypoint(spec.entrypoint)
    schedules = [CronSchedule(cron=s.cron, timezone=s.timezone) for s in spec.schedules or []]
    tags = [spec.tags] if isinstance(spec.tags, str) else spec.tags
    return flow.to_deployment(name=spec.name, description=spec.description, tags=tags,
                              parameters=spec.parameters, schedules=schedules or None)


def main(argv: list[str]) -> None:
    from prefect import serve

    path, name = Path(argv[0]), argv[1]
    serve(build(path, name), print_starting_message=True)


if __name__ == "__main__":
    main(sys.argv[1:])
