"""The benchmark recipes (configs/cirr.yaml, configs/fashioniq.yaml): each names the checkpoint and data
paths it needs and stops on a missing one with a one-line error naming it; the CIRR recipe runs end
to end (generator train -> reverse -> generate) at tiny size on CPU on a fixture CIRR folder."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from pipeline.job.cli import app
from pipeline.job.config import ConfigError, load_config
from tests.deploy.test_gpu_config import MOUNTS, ROOT, rebase
from tests.generators.real_data import real_tokenizer, write_cirr
from tests.generators.test_mtst_model import _tiny_instructblip

RECIPES = ("cirr.yaml", "fashioniq.yaml")
# Tiny and on CPU; the steps and the keys they read are the recipe's. Negatives (InstructPix2Pix) and the
# CLIP filters are off here: they have their own tests and no tiny photo checkpoints here.
TINY = {
    "embedder.checkpoint": None, "mining.strategies": ["label"], "mining.k": 2, "mining.near_dup": 1.0,
    "shards.rows_per_unit": 4, "negatives.enabled": False, "filters.enabled": False, "runtime.progress": False,
    "generator.mtst.model.train_all": True,
    "generator.mtst.train": {"epochs": 20, "batch_size": 4, "grad_accum": 1, "lr": 3e-3, "warmup_steps": 2,
                             "mixed_precision": "no", "caption_steps": 0, "progress": False},
    "generator.mtst.infer": {"device": "cpu", "dtype": "float32", "batch_size": 8},
}


@pytest.mark.parametrize("name", RECIPES)
def test_a_recipe_names_its_missing_paths_in_one_line(name):
    if any(Path(m).exists() for m in MOUNTS):
        pytest.skip("this machine has a /models or /data mount")
    with pytest.raises(ConfigError) as err:
        load_config(ROOT / "configs" / name)
    msg = str(err.value)
    assert "\n" not in msg and any(m in msg for m in MOUNTS), msg


@pytest.mark.parametrize("name", RECIPES)
def test_a_recipe_trains_on_its_benchmark_from_an_instructblip_checkpoint(name):
    g = yaml.safe_load((ROOT / "configs" / name).read_text())["generator"]["mtst"]
    assert g["model"]["pretrained"].startswith("/models/instructblip") and "train_all" not in g["model"]
    assert g["data"]["kind"] == name.split(".")[0] and g["data"]["path"].startswith("/data/")


def test_the_cirr_recipe_runs_end_to_end_at_tiny_size(tmp_path):
    data = rebase(yaml.safe_load((ROOT / "configs" / "cirr.yaml").read_text()), tmp_path)
    write_cirr(Path(data["source"]["path"]), n_pairs=10)
    Path(data["generator"]["mtst"]["model"]["pretrained"]).parent.mkdir(parents=True)
    _tiny_instructblip(tmp_path / "ckpt", real_tokenizer(), llm_hidden=128)[1].rename(
        data["generator"]["mtst"]["model"]["pretrained"])
    from pipeline.config_base import set_dotted

    recipe = tmp_path / "cirr.yaml"
    recipe.write_text(yaml.safe_dump(set_dotted(data, dict(TINY))))
    run = CliRunner()
    for step in (["generator", "train"], ["generator", "reverse"], ["generate", "--executor", "local", "--no-flow"]):
        res = run.invoke(app, [*step, "--config", str(recipe)])
        assert res.exit_code == 0, (step, res.output)
    root = Path(data["source"]["path"])
    rev = (root / "cirr" / "captions" / "cirr_train_modifier_rev_long.json").read_text().splitlines()
    assert len(rev) == 7 and all(json.loads(x)["modifier_generated"] for x in rev)
    cfg = load_config(recipe)
    manifest = json.loads((cfg.dataset_dir / "manifest.json").read_text())
    assert manifest["state"] == "complete" and manifest["rows"]["kept"] > 0
    rows = [r for f in sorted((cfg.dataset_dir / "data" / "train").glob("*.parquet")) for r in pq.read_table(f).to_pylist()]
    assert all(r["modification_text"].startswith("make it") and r["reverse_text"] for r in rows)
    # the generate step used the model the train step made (one training hash), not a second one
    assert len(list((cfg.cache_dir / "mtst").iterdir())) == 1
