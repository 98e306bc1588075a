"""The generation flow against a real Prefect server on loopback, state read back from its API."""
import json
import subprocess
import sys
import urllib.request

import pytest

from tests.flows.small import small_config
from tests.servers import prefect_env, prefect_server


def api(url: str, path: str, body: dict | None = None):
    req = urllib.request.Request(f"{url}{path}", data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"}, method="POST" if body is not None else "GET")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


@pytest.mark.slow
def test_flow_reports_completed_to_a_real_server(tmp_path):
    path = small_config(tmp_path, families=6)
    with prefect_server(tmp_path / "prefect") as url:
        out = subprocess.run(
            [sys.executable, "-m", "pipeline.job.cli", "generate", "--config", str(path), "--executor", "local"],
            env=prefect_env(tmp_path / "prefect", url), capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
        runs = api(url, "/flow_runs/filter", {"flows": {"name": {"any_": ["cirforge-generate"]}}})
        assert len(runs) == 1
        assert runs[0]["state"]["type"] == "COMPLETED"
        keys = ["small-summary", "small-counts", "small-report"]
        arts = api(url, "/artifacts/filter", {"artifacts": {"key": {"any_": keys}}})
        assert {a["key"] for a in arts} == set(keys)
        report = next(a for a in arts if a["key"] == "small-report")
        assert "report/index.html" in report["data"]
        assert (tmp_path / "out" / "small" / "report" / "index.html").is_file()
