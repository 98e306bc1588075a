"""deploy/prefect.yaml's deployments served against a real Prefect server on loopback, triggered
with `prefect deployment run`, and seen COMPLETED on the server.

`tests/deploy/serve.py` builds the deployment from prefect.yaml (entrypoint, schedules, tags)
and `prefect.serve`s it in its own process group; the server is `prefect server start`
(tests/servers.py). Everything is stopped by pid at the end.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.flows.small import small_config
from tests.servers import prefect_env, prefect_server, stop

ROOT = Path(__file__).resolve().parents[2]
PREFECT_YAML = ROOT / "deploy" / "prefect.yaml"
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def api(url: str, path: str, body: dict | None = None):
    req = urllib.request.Request(f"{url}{path}", data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"},
                                 method="POST" if body is not None else "GET")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


def spec(name: str) -> dict:
    return next(d for d in yaml.safe_load(PREFECT_YAML.read_text())["deployments"] if d["name"] == name)


def serve_and_run(tmp_path: Path, name: str, params: dict, timeout: float = 900) -> tuple[dict, dict, str]:
    """Serve deployment ``name``, trigger it with ``params``; returns (deployment, final run, server url)."""
    home = tmp_path / "prefect"
    with prefect_server(home) as url:
        env = prefect_env(home, url)
        log = open(tmp_path / "serve.log", "wb")
        served = subprocess.Popen([sys.executable, "-m", "tests.deploy.serve", str(PREFECT_YAML), name], cwd=ROOT,
                                  env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.time() + 180
            deps = []
            while not deps:
                assert served.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
                assert time.time() < deadline, "the deployment did not register in 180 s"
                deps = api(url, "/deployments/filter", {"deployments": {"name": {"any_": [name]}}})
                time.sleep(0.5)
            dep = deps[0]
            flow = api(url, f"/flows/{dep['flow_id']}")
            out = subprocess.run(
                [sys.executable, "-m", "prefect", "deployment", "run", f"{flow['name']}/{name}",
                 "--params", json.dumps(params)],
                cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
            assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
            deadline = time.time() + timeout
            while True:
                runs = api(url, "/flow_runs/filter", {"flow_runs": {"deployment_id": {"any_": [dep["id"]]}}})
                assert len(runs) == 1, runs
                run = runs[0]
                if run["state"]["type"] in TERMINAL:
                    break
                assert served.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
                assert time.time() < deadline, f"run still {run['state']['type']} after {timeout} s"
                time.sleep(1)
            return dep, run, url
        finally:
            stop(served)
            log.close()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_generate_deployment_runs_on_demand_on_a_real_server(tmp_path):
    cfg = small_config(tmp_path, families=6, generator={"kind": "annotator"},
                       embedder={"tiny": {"steps": 10, "families": 10, "batch_size": 16}})
    dep, run, _ = serve_and_run(tmp_path, "generate", {"config_path": str(cfg), "executor": "local"})
    assert run["state"]["type"] == "COMPLETED", (tmp_path / "serve.log").read_text()[-3000:]
    assert not dep["schedules"], "generate is on demand"
    assert set(spec("generate")["tags"]) <= set(dep["tags"])
    manifest = json.loads((tmp_path / "out" / "small" / "manifest.json").read_text())
    assert manifest["state"] == "complete" and manifest["rows"]["in"] > 0


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_nightly_deployment_is_scheduled_and_runs_to_completed_on_a_real_server(tmp_path):
    cfg = small_config(tmp_path, families=12, generator={"kind": "annotator"},
                       embedder={"tiny": {"steps": 10, "families": 10, "batch_size": 16}})
    registry = tmp_path / "registry"
    params = {
        "generate_config": str(cfg), "executor": "local", "night": "20261123",
        "nightly_overrides": {
            "registry": str(registry),
            "pretrain": {"stage": "ptha", "optim": {"max_steps": 5, "lr": 1e-3, "weight_decay": 0.0},
                         "data": {"batch_size": 16}, "progress": False},
            "shapesworld_benchmark": {"references": 10, "targets_per_reference": 2},
        },
    }
    dep, run, url = serve_and_run(tmp_path, "nightly", params, timeout=1000)
    assert run["state"]["type"] == "COMPLETED", (tmp_path / "serve.log").read_text()[-3000:]
    # the cron of prefect.yaml is the deployment's schedule on the server
    want = [(s["cron"], s.get("timezone")) for s in spec("nightly")["schedules"]]
    got = [(s["schedule"]["cron"], s["schedule"]["timezone"]) for s in dep["schedules"]]
    assert got == want
    result = json.loads((registry / "runs" / "20261123" / "result.json").read_text())
    assert result["version"] and isinstance(result["promoted"], bool)
    assert (tmp_path / "out" / "small-nightly-20261123" / "manifest.json").is_file()
