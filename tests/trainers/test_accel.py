"""The accelerate loop: the schedule, worker processes, and two processes against one with accumulation."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.trainers import ddp_run
from trainers.accel import lr_at
from trainers.config import OptimConfig

RUNNER = Path(ddp_run.__file__)


def _history(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]


def _close(a: list[dict], b: list[dict]) -> None:
    assert [h["step"] for h in a] == [h["step"] for h in b] and [h["epoch"] for h in a] == [h["epoch"] for h in b]
    for x, y in zip(a, b):
        assert set(x) == set(y)
        assert {k: x[k] for k in x} == pytest.approx({k: y[k] for k in y}, rel=1e-5, abs=1e-7)


def test_warmup_then_cosine_by_hand():
    o = OptimConfig(lr=1.0, max_steps=12, warmup_steps=2, schedule="cosine", min_lr_ratio=0.1)
    assert [lr_at(s, o) for s in (0, 1)] == [0.5, 1.0]
    assert lr_at(2, o) == pytest.approx(1.0) and lr_at(7, o) == pytest.approx(0.1 + 0.9 * 0.5)  # half way
    assert lr_at(12, o) == pytest.approx(0.1)
    assert lr_at(5, OptimConfig(lr=0.3)) == 0.3  # constant, no warmup: the old loop's lr


def test_worker_processes_collate_the_same_steps(tmp_path):
    ddp_run.main(str(tmp_path / "w0"), accum=2, workers=0)
    ddp_run.main(str(tmp_path / "w2"), accum=2, workers=2)
    _close(_history(tmp_path / "w0"), _history(tmp_path / "w2"))


@pytest.mark.slow
def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path):
    """DDP over gloo on the CPU (torchrun through `accelerate launch`): 2 processes x 4 rows against
    1 process x 2 micro-batches of 4 rows: the same loss curve and the same final weights."""
    launcher = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    env = {**os.environ, "PYTHONPATH": str(RUNNER.parents[2]), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, str(RUNNER), str(tmp_path / "one"), "2"], check=True, env=env)
    # --multi_gpu picks accelerate's torchrun launcher; the run itself asks for device="cpu", so gloo.
    subprocess.run([launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                    "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29517",
                    str(RUNNER), str(tmp_path / "two"), "1"], check=True, env=env)
    one, two = _history(tmp_path / "one"), _history(tmp_path / "two")
    assert len(one) == 4 and one[2]["epoch"] == 1  # 16 rows, global batch 8
    _close(one, two)
    from safetensors.torch import load_file

    a, b = (load_file(str(tmp_path / r / "model" / "model.safetensors")) for r in ("one", "two"))
    assert all((a[k] - b[k]).abs().max() < 1e-5 for k in a)
