"""The recipe's retrieval steps (configs/retrieval-*.yaml), its early input checks, and `cirforge evaluate`."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.trainers.tinybench import make_cirr
from trainers.retrieval import check_dataset, load_retrieval_config, run

CONFIGS = sorted(Path("configs").glob("retrieval-*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_retrieval_config_validates(path):
    cfg = load_retrieval_config(path)
    assert cfg.benchmark in path.stem or cfg.benchmark == "cirr"


@pytest.fixture
def tiny_run(tmp_path, dataset_dir):
    root = make_cirr(tmp_path / "cirr_dataset")
    sets = {"root": str(root), "shards": str(dataset_dir), "out_dir": str(tmp_path / "out")}
    return root, load_retrieval_config("configs/retrieval-tiny.yaml", sets)


def test_the_tiny_recipe_pretrains_finetunes_evaluates_and_writes_the_submission(tiny_run, tmp_path):
    root, cfg = tiny_run
    result = run(cfg)
    assert {"R@1", "Rsubset@1"} <= set(result["val"]["metrics"])
    recall = json.loads((cfg.out_dir / "test" / "cirr_recall.json").read_text())
    assert recall["version"] == "rc2" and len(recall) == 2 + 8
    assert (cfg.out_dir / "pretrain" / "model").is_dir() and (cfg.out_dir / "finetune" / "model").is_dir()

    from pipeline.job.cli import app

    model = cfg.out_dir / "finetune" / "model"
    out = CliRunner().invoke(app, ["evaluate", str(model), "--benchmark", "cirr", "--root", str(root),
                                   "--split", "val", "--workers", "0", "--out", str(tmp_path / "ev")])
    assert out.exit_code == 0, out.output
    assert "Rsubset@1" in out.output and json.loads((tmp_path / "ev" / "metrics.json").read_text())["metrics"]
    bad = CliRunner().invoke(app, ["evaluate", str(model), "--benchmark", "cirr", "--root", str(tmp_path / "nope")])
    assert bad.exit_code == 2 and "not found" in bad.output


@pytest.mark.parametrize("key", ["root", "shards"])
def test_a_missing_folder_fails_before_anything_trains(tiny_run, tmp_path, key):
    _, cfg = tiny_run
    cfg = cfg.model_copy(update={key: tmp_path / "missing"})
    with pytest.raises(FileNotFoundError, match="missing"):
        run(cfg)
    assert not (cfg.out_dir / "pretrain").exists()


def test_a_test_split_without_targets_is_refused_as_training_or_benchmark_data(tmp_path, dataset_dir):
    root = make_cirr(tmp_path / "c")
    assert check_dataset(root, "train") == "cirr" and check_dataset(dataset_dir, "train") == "cirforge"
    with pytest.raises(ValueError, match="no usable queries with targets"):
        check_dataset(root, "test")
    with pytest.raises(FileNotFoundError, match="no shards"):
        check_dataset(dataset_dir, "test")
