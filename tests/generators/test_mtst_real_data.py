"""The MTST recipe on real layouts (issue 18): tiny CIRR / FashionIQ folders with mixed image sizes and
bad records, a tiny random-weight InstructBLIP checkpoint, `cirforge generator train` and `reverse`."""
from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from generators.mtst.seed_sets import benchmark_seed_set, shard_seed_set
from generators.mtst.text_stage import MTSTTextStage
from pipeline.job.cli import app

from .real_data import SIZES, real_tokenizer, write_cirr, write_fashioniq
from .test_mtst_model import _tiny_instructblip

TRAIN = {"epochs": 20, "batch_size": 4, "lr": 3e-3, "warmup_steps": 2, "progress": False, "caption_steps": 0}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return _tiny_instructblip(tmp_path_factory.mktemp("ckpt"), real_tokenizer(), llm_hidden=128)[1]


@pytest.fixture(scope="module")
def cirr(tmp_path_factory):
    return write_cirr(tmp_path_factory.mktemp("cirr_dataset"))


@pytest.fixture(scope="module")
def fashioniq(tmp_path_factory):
    return write_fashioniq(tmp_path_factory.mktemp("fashionIQ_dataset"))


def _train(tmp_path, checkpoint, kind, root, model=None, **train):
    # train_all: a random frozen LLM learns no words in a few steps; the texts must say something
    # for the backends' comparison to mean anything (the frozen path: the LoRA test below)
    model = {"pretrained": str(checkpoint), "train_all": True} if model is None else model
    cfg = {"generator": {"mtst": {"model": model, "data": {"kind": kind, "path": str(root)},
                                  "train": TRAIN | train}},
           "cache_dir": str(tmp_path / "cache"), "source": {"kind": kind, "path": str(root)}}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    res = CliRunner().invoke(app, ["generator", "train", "--config", str(path), "--out", str(tmp_path / "model")])
    assert res.exit_code == 0, res.output
    return tmp_path / "model", res.output


@pytest.fixture(scope="module")
def cirr_model(tmp_path_factory, checkpoint, cirr):
    return _train(tmp_path_factory.mktemp("train-cirr"), checkpoint, "cirr", cirr)


def _pairs(seeds, n=4):
    return seeds.load(range(2 * n)), list(range(0, 2 * n, 2)), list(range(1, 2 * n, 2))


def test_cirr_seed_set_reads_the_official_layout_and_skips_bad_records(cirr):
    seeds = benchmark_seed_set("cirr", cirr)
    assert len(seeds) == 9 and seeds.pairs[0][2].startswith("make it") and seeds.pairs[0][3] is None
    s = seeds.summary()
    assert s["skipped"] == 3 and s["skipped_by_reason"] == {"bad_image": 2, "missing_key": 1}
    assert any("corrupt" in e for e in s["skipped_examples"]) and any("missing" in e for e in s["skipped_examples"])
    sizes = {im.size for im in seeds.load(range(8))}
    assert len(sizes) > 1  # mixed sizes, decoded a batch at a time


def test_fashioniq_seed_set_joins_the_two_captions_and_skips_bad_records(fashioniq):
    seeds = benchmark_seed_set("fashioniq", fashioniq)
    assert len(seeds) == 8 and " and is " in seeds.pairs[0][2]
    assert seeds.summary()["skipped_by_reason"] == {"bad_image": 2, "missing_key": 2}


def test_generator_train_on_cirr_gives_a_model_the_text_stage_loads(cirr_model, cirr):
    model_dir, output = cirr_model
    assert "seed set cirr: 9 triplets, 3 skipped" in output
    info = json.loads((model_dir / "train_info.json").read_text())
    assert info["seed_set"]["skipped_by_reason"] == {"bad_image": 2, "missing_key": 1}
    assert info["reverse"].startswith("not trained apart")
    stage = MTSTTextStage(model_dir)
    forward, reverse = stage.describe(*_pairs(benchmark_seed_set("cirr", cirr)))
    assert all(t.startswith("make it") for t in forward + reverse), (forward, reverse)


def test_generator_train_on_fashioniq_frozen_with_lora(tmp_path, checkpoint, fashioniq):
    from safetensors.torch import load_file

    model_dir, output = _train(tmp_path, checkpoint, "fashioniq", fashioniq, model={"pretrained": str(checkpoint)},
                               epochs=2, lora_rank=4)
    assert "seed set fashioniq: 8 triplets, 4 skipped" in output
    meta = json.loads((model_dir / "mtst_config.json").read_text())
    assert meta["weights"] == "trained" and meta["lora"]["rank"] == 4  # the frozen parts stay in the checkpoint
    saved = load_file(model_dir / "model.safetensors")
    assert any("lora_A" in k for k in saved) and not any(k.startswith("vision_model.") for k in saved)
    stage = MTSTTextStage(model_dir)  # adapters merged: a plain LLM for both backends
    assert not any("lora_" in k for k, _ in stage.model.language_model.named_parameters())
    forward, reverse = stage.describe(*_pairs(benchmark_seed_set("fashioniq", fashioniq)))
    assert len(forward) == len(reverse) == 4


def test_a_checkpoint_without_a_named_seed_set_stops_with_the_key(tmp_path, checkpoint):
    from pipeline.job.config import ConfigError, parse_config

    base = {"source": {"kind": "folder", "path": str(tmp_path)}}
    with pytest.raises(ConfigError) as err:
        parse_config({**base, "generator": {"mtst": {"model": {"pretrained": str(checkpoint)}}}})
    assert "\n" not in str(err.value) and "data.kind" in str(err.value)
    with pytest.raises(ConfigError, match="data.path"):
        parse_config({**base, "generator": {"mtst": {"model": {"pretrained": str(checkpoint)},
                                                     "data": {"kind": "cirr"}}}})
    named = parse_config({**base, "generator": {"mtst": {"model": {"pretrained": str(checkpoint)},
                                                         "data": {"kind": "shapesworld"}}}})
    assert named.generator.mtst.data.kind == "shapesworld"


def test_reverse_writes_the_authors_layout_and_shards(cirr_model, cirr, tmp_path):
    import pyarrow.parquet as pq

    res = CliRunner().invoke(app, ["generator", "reverse", "--model", str(cirr_model[0]), "--dataset", "cirr",
                                   "--root", str(cirr), "--out", str(tmp_path / "rev")])
    assert res.exit_code == 0, res.output
    lines = (cirr / "cirr" / "captions" / "cirr_train_modifier_rev_long.json").read_text().splitlines()
    recs = [json.loads(x) for x in lines]
    assert len(recs) == 9 and all(r["modifier_generated"].startswith("make it") for r in recs)
    assert {"pairid", "reference", "target_hard", "caption", "img_set"} <= set(recs[0])
    rows = pq.read_table(next((tmp_path / "rev" / "data" / "train").glob("*.parquet"))).to_pylist()
    assert len(rows) == 9 and all(r["reverse_text"] and r["modification_text"] for r in rows)
    shards = shard_seed_set(tmp_path / "rev")  # the shards are a seed set too, reverse texts and all
    assert len(shards) == 9 and all(p[3] for p in shards.pairs) and shards.load([0])[0].size in SIZES
    assert benchmark_seed_set("cirr", cirr, read_reverse=True).summary()["reverse_texts"] == 9  # seed reverse texts
    assert benchmark_seed_set("cirr", cirr).summary()["reverse_texts"] == 0  # unless asked
    (cirr / "cirr" / "captions" / "cirr_train_modifier_rev_long.json").unlink()  # the module's other tests


def test_reverse_for_fashioniq_names_images_with_their_extension(cirr_model, fashioniq):
    res = CliRunner().invoke(app, ["generator", "reverse", "--model", str(cirr_model[0]), "--dataset", "fashioniq",
                                   "--root", str(fashioniq)])
    assert res.exit_code == 0, res.output
    recs = [json.loads(x) for x in (fashioniq / "captions" / "cap_train_dress_rev.json").read_text().splitlines()]
    assert recs and all(r["candidate"].endswith(".png") and "modifier_generated" in r for r in recs)
    assert (fashioniq / "images" / recs[0]["candidate"]).is_file()  # what the authors' loader opens
    assert benchmark_seed_set("fashioniq", fashioniq, read_reverse=True).summary()["reverse_texts"] == 8
    for f in (fashioniq / "captions").glob("cap_train_*_rev.json"):
        f.unlink()


@pytest.mark.slow
def test_vllm_and_transformers_give_the_same_greedy_texts_on_a_cirr_model(cirr_model, cirr):
    pytest.importorskip("vllm")
    from generators.mtst.config import MTSTInferConfig

    pairs = _pairs(benchmark_seed_set("cirr", cirr))
    hf = MTSTTextStage(cirr_model[0]).describe(*pairs)
    stage = MTSTTextStage(cirr_model[0], MTSTInferConfig(backend="vllm", vllm_gpu_memory_utilization=0.2))
    try:
        assert stage.describe(*pairs) == hf
    finally:
        stage.teardown()
