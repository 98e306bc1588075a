"""SIGKILL the generation mid-run, rerun the same command: exactly the ids of an uninterrupted run."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.flows.small import kept_ids, small_config, triplet_ids
from tests.servers import stop


def cirforge(*args, env=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipeline.job.cli", *args], env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


@pytest.mark.slow
def test_sigkill_mid_run_then_rerun_gives_exactly_the_uninterrupted_ids(tmp_path):
    env = dict(os.environ, PREFECT_HOME=str(tmp_path / "prefect"))
    # the interrupted run and the reference run use the same config in two folders
    # a low cap on rows per text makes the duplicates filter (state across units) reject rows:
    # the rerun must rebuild that state from the committed units to reject the same ones
    dup = {"duplicates": {"max_pairs_per_text": 2}}
    killed = small_config(tmp_path / "a", families=60, rows_per_unit=8, filters=dup)
    clean = small_config(tmp_path / "b", families=60, rows_per_unit=8, filters=dup)
    proc = cirforge("generate", "--config", str(killed), "--executor", "ray", "--no-flow", env=env)
    units = tmp_path / "a" / "out" / "small" / "_units"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and len(list(units.glob("*.json"))) < 3:
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed: make it longer"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    n_units = len(list(units.glob("*.json")))
    assert n_units >= 3
    partial = triplet_ids(tmp_path / "a" / "out" / "small")
    ref = cirforge("generate", "--config", str(clean), "--executor", "ray", "--no-flow", env=env)
    rerun = cirforge("generate", "--config", str(killed), "--executor", "ray", "--no-flow", env=env)
    try:
        out_ref, _ = ref.communicate(timeout=600)
        out_rerun, _ = rerun.communicate(timeout=600)
    finally:
        stop(ref)
        stop(rerun)
    assert ref.returncode == 0, out_ref.decode()[-3000:]
    assert rerun.returncode == 0, out_rerun.decode()[-3000:]
    got = triplet_ids(tmp_path / "a" / "out" / "small")
    want = triplet_ids(tmp_path / "b" / "out" / "small")
    assert len(got) == len(set(got)), "duplicate triplet ids after the rerun"
    assert got == want
    kept_got, kept_want = kept_ids(tmp_path / "a" / "out" / "small"), kept_ids(tmp_path / "b" / "out" / "small")
    assert kept_got == kept_want, "the rerun kept other rows than the uninterrupted run"
    got_m, want_m = (json.loads((tmp_path / d / "out" / "small" / "manifest.json").read_text()) for d in "ab")
    assert got_m["stage_counts"] == want_m["stage_counts"], "the rerun's counts per stage miss some units"
    assert want_m["reject_reasons"].get("duplicates:text_reused", 0) > 0, \
        "the test no longer exercises the duplicates state"
    assert 0 < len(partial) < len(want)
    assert not list((tmp_path / "a").rglob(".part-*")), "a temporary shard was left behind"
