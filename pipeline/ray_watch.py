"""A watcher that ends a run's local Ray when the run's driver process is gone, however it died.

``python ray_watch.py <driver pid> <driver start time> <ray temp dir>``: started by ``init_ray``
in a session of its own (a SIGKILL of the run's process group does not reach it), it polls the
driver; once the driver is gone it SIGKILLs every process of that Ray (gcs, raylet, agents,
workers, found by the temp dir in their command line or open files, so a worker renamed
``ray::...`` or re-parented to init is found too), then removes the temp dir. Ray's own fate
sharing (PR_SET_PDEATHSIG on the processes the driver starts) misses the agents and workers the
raylet starts. Stdlib only, Linux /proc: it runs as a plain script, beside any package.
"""
from __future__ import annotations

import os
import shutil
import signal
import sys
import time

def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks (field 22 of /proc/<pid>/stat), None if it is gone:
    with the pid it names one process, even after the pid is reused."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()[19]


def uses(pid: int, temp_dir: str) -> bool:
    """Whether a process belongs to the Ray under ``temp_dir``: its command line names it, or it
    holds a file there open (every Ray process logs into the session dir, even a renamed agent)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if temp_dir.encode() in f.read():
                return True
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(temp_dir + "/"):
                    return True
            except OSError:
                continue
    except OSError:  # gone, or another user's
        return False
    return False


def marked(temp_dir: str) -> list[int]:
    """Pids of this user's processes of the Ray under ``temp_dir``."""
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid() and uses(int(p), temp_dir)]


def reap(temp_dir: str, timeout: float = 20.0) -> list[int]:
    """SIGKILL the marked processes until none is left (a dying raylet may still start one)."""
    killed: list[int] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = marked(temp_dir)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except OSError:
                pass
        time.sleep(0.2)
    return killed


def main(argv: list[str]) -> int:
    pid, started, temp_dir = int(argv[0]), argv[1], argv[2].rstrip("/")
    while start_time(pid) == started:
        time.sleep(0.5)
    reap(temp_dir)
    if os.path.basename(temp_dir).startswith("cf-ray-"):  # only a temp dir init_ray made
        shutil.rmtree(temp_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
