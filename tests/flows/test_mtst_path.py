"""The main path with the learned generator: train (cached) -> forward/reverse texts -> negatives -> filters."""
import json

import pyarrow.dataset as pads

from pipeline.job.chain import generator_name, prepare_generator
from pipeline.job.config import load_config
from pipeline.job.generate import generate
from tests.flows.small import assert_stage_counts_add_up, small_config

TINY_MTST = {"kind": "mtst", "mtst": {
    "data": {"n_triplets": 48, "image_size": 32},
    "model": {"image_size": 32, "patch_size": 8, "vision_layers": 1, "qformer_layers": 1, "llm_layers": 1},
    "train": {"epochs": 1, "batch_size": 16, "warmup_steps": 1, "checkpoint_every": 1000,
              "caption_steps": 2, "caption_images": 32, "caption_batch_size": 32},
    "infer": {"max_new_tokens": 12, "batch_size": 16}}}


def test_mtst_generator_writes_both_texts_and_every_row_is_accounted_for(tmp_path):
    cfg = load_config(small_config(tmp_path, families=6, generator=TINY_MTST))
    manifest = generate(cfg, executor="local", progress=False)
    rows = manifest["rows"]
    assert rows["in"] == rows["kept"] + rows["rejected"] == manifest["stage_counts"]["mining"]["pairs"] > 0
    assert_stage_counts_add_up(manifest, ["mtst_text", "negatives", "text_sanity", "roundtrip",
                                          "text_image_consistency", "clip_direction", "image_similarity", "duplicates"])
    files = sorted(str(p) for p in cfg.dataset_dir.glob("*/**/part-*.parquet"))
    table = pads.dataset(files, format="parquet").to_table(
        columns=["generator", "modification_text", "reverse_text"]).to_pylist()
    assert len(table) == rows["in"]
    assert {r["generator"] for r in table} == {generator_name(cfg)}
    assert generator_name(cfg).startswith("mtst-tiny-")
    # a one-epoch model on 48 triplets writes texts (mostly wrong: the filters reject them with reasons)
    assert all(isinstance(r["modification_text"], str) for r in table)
    if rows["rejected"]:
        assert sum(manifest["reject_reasons"].values()) >= rows["rejected"]
    # the model was trained once, under the run's cache folder, and a rerun loads it
    runs = list((tmp_path / "cache" / "mtst").glob("*/final"))
    assert len(runs) == 1
    assert prepare_generator(cfg) == str(runs[0])
    again = generate(cfg, executor="local", progress=False)
    assert again["rows"] == rows
    assert json.loads((cfg.dataset_dir / "manifest.json").read_text())["config_hash"] == cfg.config_hash()
