"""A watcher that ends what a run started once the run's process is gone, however it died.

``python run_watch.py <owner pid> <owner start time> <target>``: started in a session of its own
(a SIGKILL of the run's process group does not reach it), it polls the owner; once the owner is
gone it SIGKILLs every process of the target, then removes a Ray temp dir. A target is

- a Ray temp dir (``init_ray``'s local Ray): gcs, raylet, agents, workers, found by the dir in
  their command line or open files, so a worker renamed ``ray::...`` or re-parented to init is
  found too. Ray's own fate sharing (PR_SET_PDEATHSIG on the processes the driver starts) misses
  the agents and workers the raylet starts.
- ``env:NAME=VALUE`` (``own_children``): every process whose environment holds it, i.e. whatever
  the owner started after setting it (Prefect's temporary API server, a uvicorn process Prefect
  starts in the owner's process group and stops only at a clean exit) and their descendants.

Stdlib only, Linux /proc: it runs as a plain script, beside any package.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

OWNER = "CIRFORGE_RUN_OWNER"  # the environment mark of what a run started (``own_children``)


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks (field 22 of /proc/<pid>/stat), None if it is gone:
    with the pid it names one process, even after the pid is reused."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()[19]


def uses(pid: int, target: str) -> bool:
    """Whether a process belongs to the target: for ``env:NAME=VALUE``, its environment holds it;
    for a Ray temp dir, its command line names it, or it holds a file there open (every Ray
    process logs into the session dir, even a renamed agent)."""
    try:
        if target.startswith("env:"):
            with open(f"/proc/{pid}/environ", "rb") as f:
                return b"\0" + target[4:].encode() + b"\0" in b"\0" + f.read() + b"\0"
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if target.encode() in f.read():
                return True
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(target + "/"):
                    return True
            except OSError:
                continue
    except OSError:  # gone, or another user's
        return False
    return False


def marked(target: str) -> list[int]:
    """Pids of this user's processes of the target."""
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid() and uses(int(p), target)]


def reap(target: str, timeout: float = 20.0) -> list[int]:
    """SIGKILL the marked processes until none is left (a dying raylet may still start one)."""
    killed: list[int] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = marked(target)
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


_WATCHERS: list = []  # held: a watcher outlives this process on purpose


def watch(target: str) -> bool:
    """Start a watcher of the target for this process; False without /proc (nothing to watch
    with). The watcher never carries the owner mark, so no other watcher kills it."""
    started = start_time(os.getpid())
    if started is None:
        return False
    env = {k: v for k, v in os.environ.items() if k != OWNER}
    _WATCHERS.append(subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), str(os.getpid()), started, target],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env=env, start_new_session=True, close_fds=True))
    return True


def own_children() -> None:
    """Own every process this one starts from now on: they inherit a mark in their environment
    (``CIRFORGE_RUN_OWNER=<pid>-<start time>``), and a watcher SIGKILLs what carries it once this
    process is gone. Once per process; a run started by another run takes its own over."""
    started = start_time(os.getpid())
    if started is None:
        return
    mark = f"{os.getpid()}-{started}"
    if os.environ.get(OWNER) == mark:
        return
    if watch(f"env:{OWNER}={mark}"):
        os.environ[OWNER] = mark


def main(argv: list[str]) -> int:
    pid, started, target = int(argv[0]), argv[1], argv[2]
    if not target.startswith("env:"):
        target = target.rstrip("/")
    while start_time(pid) == started:
        time.sleep(0.5)
    reap(target)
    if os.path.basename(target).startswith("cf-ray-"):  # only a temp dir init_ray made
        shutil.rmtree(target, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
