"""The nightly flow on ShapesWorld: generate, train, judge against the current model, promote or refuse.

Real generation, real tiny training and real evaluation. The judge's benchmark is the nights' own
triplets (every night generates the same rows here: ``vary_seed`` off), so a model trained for many
steps is better on it than a model trained for one, and the flow must keep the better one.
"""
import json

import pytest
import yaml

from flows.nightly import nightly_flow
from pipeline.job.config import load_config
from pipeline.job.generate import generate
from trainers.registry import Registry

pytestmark = pytest.mark.slow


def run_config(tmp_path):
    cfg = {
        "name": "nightly", "out_dir": str(tmp_path / "out"), "cache_dir": str(tmp_path / "cache"), "seed": 3,
        "source": {"kind": "shapesworld", "shapesworld": {"image_size": 32, "families": 12, "variants_per_family": 4}},
        "embedder": {"tiny": {"image_size": 32, "steps": 2, "families": 10, "batch_size": 16}},
        "mining": {"strategies": ["label"], "k": 3, "near_dup": 1.0},
        "splits": {"train": 1.0, "val": 0.0, "test": 0.0},
        "generator": {"kind": "annotator"},
        "negatives": {"editor": "shapesworld"},
        "filters": {"clip_direction": {"enabled": False}, "image_similarity": {"enabled": False},
                    "text_image_consistency": {"enabled": False}},
        "shards": {"rows_per_unit": 64, "batch_size": 32},
        "runtime": {"progress": False},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_nightly_promotes_a_better_model_and_refuses_a_worse_one(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    path = run_config(tmp_path)
    bench = load_config(path, {"name": "bench"})
    generate(bench, executor="local", progress=False)
    registry = tmp_path / "registry"

    def night(name, steps):
        return nightly_flow(str(path), night=name, executor="local", nightly_overrides={
            "registry": str(registry), "vary_seed": False,
            "benchmark_dir": str(bench.dataset_dir), "benchmark_split": "train",
            "pretrain.model": {"image_size": 32, "tiny": {"patch_size": 8}},
            "pretrain.optim.max_steps": steps, "pretrain.optim.lr": 3e-3,
            "pretrain.data.batch_size": 16, "pretrain.num_threads": 1})

    first = night("20261101", 1)
    assert first["promoted"] and first["version"] == "v0001"
    second = night("20261102", 150)
    assert second["promoted"], second["reasons"]
    third = night("20261103", 1)
    assert not third["promoted"], third["reasons"]
    reg = Registry(registry)
    assert reg.current() == "v0002" and reg.versions() == ["v0001", "v0002", "v0003"]
    assert json.loads((registry / "runs" / "20261103" / "result.json").read_text())["current"] == "v0002"
    # tonight's shards went to their own dataset folder
    assert (tmp_path / "out" / "nightly-nightly-20261103" / "manifest.json").is_file()
