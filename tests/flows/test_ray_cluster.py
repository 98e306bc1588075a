"""The generation flow on a real multi-node Ray cluster on this machine, one node SIGKILLed mid-run.

Shaped like deploy/kuberay: `ray start --head --num-cpus=0` (schedules, hosts the driver, runs no
stage) and two worker nodes (`ray start --address=...`), each in its own process group with its
own ports, one temp dir and a per-test auth token; the flow joins through RAY_ADDRESS. When some
units are committed and the last node is running a stage, its whole process group (raylet,
workers) gets SIGKILL. Ray Data retries the lost tasks and restarts the lost actors on the other
worker (its defaults: task max_retries=-1, actor max_restarts=-1), so the same run finishes, and
its triplet ids are exactly those of an uninterrupted run: none missing, no duplicates, no
partial shard.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.flows.small import small_config, triplet_ids
from tests.servers import free_port, prefect_env, stop

RAY = str(Path(sys.executable).with_name("ray"))
ROOT = Path(__file__).resolve().parents[2]


def _wait_started(proc: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.time() + timeout
    while "Ray runtime started" not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.time() > deadline:
            raise RuntimeError(f"`ray start` did not come up: {log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.3)


class Cluster:
    """A head without CPUs and worker nodes, started by pid and stopped by process group."""

    def __init__(self, workers: int = 2, cpus_per_node: int = 2):
        # short: Ray's unix socket paths under the temp dir must stay under 107 bytes
        self.tmp = Path(tempfile.mkdtemp(prefix="cf-ray-", dir="/tmp"))
        self.port = free_port()
        self.cpus = cpus_per_node
        self.workers = workers
        self.env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token",
                        RAY_AUTH_TOKEN=secrets.token_hex(32))
        self.procs: list[subprocess.Popen] = []

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _start(self, name: str, args: list[str], cpus: int) -> subprocess.Popen:
        log = self.tmp / f"{name}.log"
        proc = subprocess.Popen(
            [RAY, "start", *args, "--node-ip-address=127.0.0.1", f"--num-cpus={cpus}",
             "--object-store-memory=150000000", f"--dashboard-agent-listen-port={free_port()}",
             f"--metrics-export-port={free_port()}", "--disable-usage-stats", "--block"],
            env=self.env, stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        _wait_started(proc, log, timeout=240)
        return proc

    def start(self) -> None:
        self.head = self._start("head", [
            "--head", f"--port={self.port}", f"--temp-dir={self.tmp}", "--include-dashboard=false",
            f"--dashboard-port={free_port()}", f"--ray-client-server-port={free_port()}"], cpus=0)
        # every worker can hold the stateful stages' actors alone (negatives 1 CPU, duplicates 0.5)
        # plus a task, so that the run goes on when one of them is gone
        self.nodes = [self._start(f"node{i}", [f"--address={self.address}"], cpus=self.cpus)
                      for i in range(self.workers)]
        self.node = self.nodes[-1]  # the one to kill

    def node_tasks(self) -> list[str]:
        """Names of the stage tasks/actors the second node runs now (Ray sets ray::<name> titles)."""
        import psutil

        try:
            kids = psutil.Process(self.node.pid).children(recursive=True)
        except psutil.Error:
            return []
        names = []
        for k in kids:
            with contextlib.suppress(psutil.Error):
                names.append(k.name())
        return [n for n in names if n.startswith("ray::Map") and not n.endswith("__init__")]

    def kill_node(self) -> None:
        os.killpg(self.node.pid, signal.SIGKILL)
        self.node.wait(timeout=30)

    def stop(self) -> None:
        import psutil

        for p in reversed(self.procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=30)
        # anything of this cluster that left its process group: found by the temp dir it names
        for p in psutil.process_iter(["pid", "cmdline"]):
            with contextlib.suppress(psutil.Error):
                if any(str(self.tmp) in a for a in p.info["cmdline"] or []):
                    p.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)


def _cfg(base: Path) -> Path:
    base.mkdir(parents=True)
    # label mining over many small scenes: many units, each a few rows; a 10-step tiny CLIP
    return small_config(base, families=150, rows_per_unit=8, generator={"kind": "annotator"},
                        embedder={"tiny": {"steps": 10, "families": 10, "batch_size": 16}},
                        cache_dir=str(base.parent / "cache"))


def _ids(folder: Path) -> list[str]:
    import pyarrow.dataset as pads

    if not folder.is_dir():
        return []
    return sorted(pads.dataset(folder, format="parquet").to_table(columns=["triplet_id"]).column("triplet_id").to_pylist())


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_flow_on_a_three_node_cluster_survives_losing_a_worker_node(tmp_path):
    cluster = Cluster()
    drv = None
    try:
        cluster.start()
        cfg = _cfg(tmp_path / "a")
        env = dict(prefect_env(tmp_path / "prefect"), RAY_ADDRESS=cluster.address,
                   RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=cluster.env["RAY_AUTH_TOKEN"])
        log = tmp_path / "driver.log"
        drv = subprocess.Popen([sys.executable, "-m", "pipeline.job.cli", "generate", "--config", str(cfg),
                                "--executor", "ray"], cwd=ROOT, env=env, stdout=open(log, "wb"),
                               stderr=subprocess.STDOUT, start_new_session=True)
        dataset = tmp_path / "a" / "out" / "small"
        deadline = time.time() + 900
        running = []
        units_before = 0
        # mid-run: some units are committed and the second node is running a stage
        while drv.poll() is None and time.time() < deadline and not (units_before and running):
            units_before = len(list((dataset / "_units").glob("*.json")))
            running = cluster.node_tasks() if units_before else []
            time.sleep(0.05)
        assert units_before and running, f"the run ended before it could be killed mid-run: {log.read_text()[-3000:]}"
        cluster.kill_node()
        print(f"killed a worker node while it ran {running}; {units_before} units were committed")
        assert drv.poll() is None, "the run ended before the node was killed"
        drv.wait(timeout=max(60, deadline - time.time()))
        out = log.read_text(errors="replace")
        assert drv.returncode == 0, out[-4000:]
    finally:
        if drv is not None:
            stop(drv)
        cluster.stop()

    # the same config, run without Ray and without a fault
    ref = _cfg(tmp_path / "b")
    res = subprocess.run([sys.executable, "-m", "pipeline.job.cli", "generate", "--config", str(ref), "--executor",
                          "local", "--no-flow"], cwd=ROOT, env=prefect_env(tmp_path / "prefect"),
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    got, want = triplet_ids(dataset), triplet_ids(tmp_path / "b" / "out" / "small")
    assert len(got) == len(set(got)), "duplicate triplet ids after the node loss"
    assert got == want and len(want) > 0
    for part in ("data", "rejected"):  # and each row on the same side: kept or rejected
        assert _ids(dataset / part) == _ids(tmp_path / "b" / "out" / "small" / part), part
    assert not list(dataset.rglob(".*.tmp-*")), "a partial (temporary) shard was left"
    import json

    manifest = json.loads((dataset / "manifest.json").read_text())
    assert manifest["state"] == "complete" and manifest["units_committed"] == manifest["units_total"]
