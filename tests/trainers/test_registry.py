"""The model registry and the promotion rule: hand cases, and real tiny models judged by real evaluation."""
import json
import os

import pytest

from tests.trainers.tinyworld import make_rows
from trainers.config import EvalConfig, TrainConfig
from trainers.evaluate import benchmark_from_rows
from trainers.loop import finetune
from trainers.nightly import NightlyConfig
from trainers.registry import Registry, decide
from trainers.steps import judge


def test_decide_promotes_when_nothing_regresses():
    assert decide({"R@1": 10, "hard_R@1": 50, "R@5": 80}, None).promote
    assert decide({"R@1": 10, "hard_R@1": 50, "R@5": 80}, {"R@1": 10, "hard_R@1": 50, "R@5": 80}).promote  # equal holds
    d = decide({"R@1": 10, "hard_R@1": 60, "R@5": 79.9}, {"R@1": 10, "hard_R@1": 50, "R@5": 80})
    assert not d.promote and "R@5: 79.90 vs current 80.00 (regresses)" in d.reasons
    assert decide({"R@1": 10, "hard_R@1": 60, "R@5": 79.5}, {"R@1": 10, "hard_R@1": 50, "R@5": 80}, tolerance=0.5).promote
    assert not decide({"R@1": 10, "hard_R@1": float("nan"), "R@5": 90}, {"R@1": 10, "hard_R@1": 0, "R@5": 80}).promote
    with pytest.raises(KeyError, match="hard_R@1"):
        decide({"R@5": 1}, {"R@5": 1})


def test_registry_versions_and_atomic_pointer(tmp_path):
    model = tmp_path / "m"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"x")
    reg = Registry(tmp_path / "reg")
    assert reg.current() is None and reg.versions() == []
    v1 = reg.register(model, {"R@5": 1.0}, {"night": "a"})
    v2 = reg.register(model, {"R@5": 2.0})
    assert (v1, v2) == ("v0001", "v0002") and reg.versions() == [v1, v2]
    assert reg.metrics(v2) == {"R@5": 2.0} and reg.info(v1)["night"] == "a"
    reg.promote(v2)
    assert reg.current() == v2 and (tmp_path / "reg" / "current").read_text() == "v0002\n"
    assert not [p for p in os.listdir(tmp_path / "reg") if p.startswith(".")]  # no temporaries left
    assert [json.loads(line)["version"] for line in (tmp_path / "reg" / "history.jsonl").read_text().splitlines()] == [v1, v2]
    with pytest.raises(FileNotFoundError, match="v0009"):
        reg.promote("v0009")
    with pytest.raises(FileNotFoundError, match="save_model"):
        reg.register(tmp_path, {})


def _train(rows, cfg, steps, out):
    cfg = cfg.model_copy(update={"out_dir": out, "optim": cfg.optim.model_copy(update={"max_steps": steps}),
                                 "data": cfg.data.model_copy(update={"batch_size": 8}), "resume": False})
    return finetune(rows, cfg).model_dir


def test_judge_promotes_a_better_model_and_refuses_a_worse_one(tmp_path, train_cfg: TrainConfig):
    # Real tiny models on the colour world, judged on its triplets (with FBCIR negatives): one optimizer
    # step leaves the model near chance, 60 steps learn the colours.
    rows = make_rows(8)
    bench = benchmark_from_rows(rows, "tinyworld")
    ncfg = NightlyConfig(eval=EvalConfig(max_text_len=16))
    reg = Registry(tmp_path / "reg")
    weak = _train(rows, train_cfg, 1, tmp_path / "weak")
    strong = _train(rows, train_cfg, 60, tmp_path / "strong")

    first = judge(weak, bench, reg, ncfg)
    assert first["promoted"] and first["reasons"] == ["no current model"] and reg.current() == "v0001"

    better = judge(strong, bench, reg, ncfg)
    assert better["promoted"], better["reasons"]
    assert better["current_metrics"] is not None and reg.current() == "v0002"
    assert better["candidate_metrics"]["hard_R@1"] > better["current_metrics"]["hard_R@1"]

    worse = judge(weak, bench, reg, ncfg)
    assert not worse["promoted"] and reg.current() == "v0002", worse["reasons"]
    assert any("regresses" in r for r in worse["reasons"])
    assert reg.info(worse["version"])["decision"]["promote"] is False  # registered, not promoted
    # the current model's metrics were measured tonight, not copied from its registration
    assert worse["current_metrics"] == pytest.approx(reg.metrics("v0002"))
