"""SIGTERM or SIGKILL of a flow run leaves no Prefect temporary server (nor any other process) alive.

``cirforge generate`` on the flow path, with no PREFECT_API_URL, has Prefect start its temporary
API server: a uvicorn child in the CLI's process group that Prefect stops only at a clean exit.
The run is signalled alone (not its group, which would reach uvicorn anyway) once the server
answers and a unit is committed (the flow is inside its run-stages task); within 30 s neither the
server, found by pid, nor any process with the test's marker may be left. SIGTERM must end the
run through Python's exit (status 143, the flow run marked Crashed), SIGKILL through the run's
watcher (``pipeline/run_watch.py``). The local executor: Ray has its own test
(``test_sigkill_ray.py``).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.flows.small import small_config
from tests.flows.test_sigkill_ray import MARK, clean_up, marked, wait_for


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def alive(pid: int) -> bool:
    """Whether the process runs (a zombie waiting for a parent that does not reap is not)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def server(mark: str) -> tuple[int, int] | None:
    """(pid, port) of the run's Prefect temporary server once it answers on /api/health."""
    for pid in marked(mark):
        args = cmdline(pid).split()
        if "prefect.server.api.server:create_app" in args and "--port" in args:
            port = int(args[args.index("--port") + 1])
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=5):
                    return pid, port
            except OSError:
                return None
    return None


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_signal_leaves_no_prefect_server(tmp_path: Path, sig: signal.Signals):
    mark = uuid.uuid4().hex
    cfg = small_config(tmp_path, families=400, rows_per_unit=8)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_URL")}
    env.update({MARK: mark, "PREFECT_HOME": str(tmp_path / "prefect")})
    log = open(tmp_path / "run.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.job.cli", "generate", "--config", str(cfg),
                             "--executor", "local"],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    units = tmp_path / "out" / "small" / "_units"
    tail = lambda: (tmp_path / "run.log").read_text(errors="replace")[-2000:]  # noqa: E731
    try:
        up = wait_for(lambda: proc.poll() is not None or (server(mark) and any(units.glob("unit-*.json"))),
                      timeout=300)
        assert up and proc.poll() is None, f"the run ended or stalled before it could be signalled: {tail()}"
        pid, port = server(mark)
        os.kill(proc.pid, sig)
        rc = proc.wait(timeout=60)
        assert rc == (128 + signal.SIGTERM if sig == signal.SIGTERM else -signal.SIGKILL), (rc, tail())
        gone = wait_for(lambda: not alive(pid) and not marked(mark), timeout=30)
        assert gone, f"left alive 30 s after {sig.name}: server {pid} (port {port}), {marked(mark)}"
        if sig == signal.SIGTERM:
            assert "Crashed" in tail(), tail()
    finally:
        clean_up(mark, proc)
