"""SIGKILL of a run (its process group, or its process alone) leaves no process of its Ray alive.

The CLI runs a small config on the default Ray executor in a session of its own, with a marker in
its environment that every process it starts inherits (Ray hands its environment down to gcs,
raylet, agents and workers); once Ray's workers have committed a unit, the run is SIGKILLed and
within 30 s no process with the marker may be left. The runtime's watcher finds Ray's processes
another way (the Ray temp dir in their open files), so the marker checks it independently.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.flows.small import small_config

MARK = "CIRFORGE_TEST_RUN"


def marked(mark: str) -> dict[int, str]:
    """This user's processes (pid -> command) whose environment holds the marker."""
    needle = f"\0{MARK}={mark}\0".encode()
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                if needle not in b"\0" + f.read() + b"\0":
                    continue
            with open(f"/proc/{name}/cmdline", "rb") as f:
                out[int(name)] = f.read().replace(b"\0", b" ").decode(errors="replace").strip()[:120]
        except OSError:
            continue
    return out


def wait_for(what, timeout: float, step: float = 0.3):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = what()
        if got:
            return got
        time.sleep(step)
    return what()


def clean_up(mark: str, proc: subprocess.Popen) -> None:
    """Never leave our own processes behind, pass or fail: every marked one, and the run's group."""
    for pid in marked(mark):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


@pytest.mark.slow
@pytest.mark.parametrize("target", ["group", "process"])
def test_sigkill_leaves_no_ray_process(tmp_path: Path, target: str):
    mark = uuid.uuid4().hex
    cfg = small_config(tmp_path, families=80, rows_per_unit=8)
    env = dict(os.environ, **{MARK: mark}, PREFECT_HOME=str(tmp_path / "prefect"), RAY_USAGE_STATS_ENABLED="0")
    log = open(tmp_path / "run.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.job.cli", "generate", "--config", str(cfg), "--no-flow"],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    units = tmp_path / "out" / "small" / "_units"
    try:
        # Ray is up, with workers, once a unit is committed
        up = wait_for(lambda: proc.poll() is not None or any(units.glob("unit-*.json")), timeout=300)
        assert up and proc.poll() is None, \
            f"the run ended or stalled before it could be killed: {(tmp_path / 'run.log').read_text()[-2000:]}"
        before = marked(mark)
        assert any("raylet" in c for c in before.values()) and any("ray::" in c for c in before.values()), before
        if target == "group":
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        gone = wait_for(lambda: not marked(mark), timeout=30)
        assert gone, f"left alive 30 s after SIGKILL of the {target}: {marked(mark)}"
    finally:
        clean_up(mark, proc)
