"""Each model kind, from a tiny random checkpoint saved with save_pretrained, fine-tunes on the official
CIRR and FashionIQ layouts and is evaluated on CIRR, FashionIQ and CIRCO (val metrics, test files)."""
from __future__ import annotations

import json

import pytest
from transformers import Blip2ForImageTextRetrieval, CLIPModel

from tests.trainers.tinybench import make_circo, make_cirr, make_fashioniq
from tests.trainers.tinyworld import SIZE
from trainers.benchmarks import read
from trainers.config import EvalConfig, ModelConfig, TinyConfig, TrainConfig
from trainers.evaluate_real import evaluate_folder, table
from trainers.factory import build_word_tokenizer, create_model, tiny_blip2_config, tiny_clip_config
from trainers.loop import finetune

TINY = ModelConfig(image_size=SIZE, tiny=TinyConfig(vision_hidden=16, qformer_hidden=16, qformer_layers=2,
                                                    num_query_tokens=2, embed_dim=8, max_text_len=16))
STAGE = {"qformer_cir": "ptha", "detailfusion": "df_joint", "clip4cir": "ptha"}


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    d = tmp_path_factory.mktemp("bench")
    return {"cirr": make_cirr(d / "cirr_dataset"), "fashioniq": make_fashioniq(d / "fashionIQ_dataset"),
            "circo": make_circo(d / "CIRCO")}


@pytest.fixture(scope="module")
def checkpoints(roots, tmp_path_factory):
    """Tiny BLIP-2 retrieval and CLIP checkpoints, each with a word tokenizer over the benchmarks' texts."""
    texts = [t for kind, root in roots.items() for split in (("val",) if kind == "circo" else ("train", "val"))
             for q in read(root, split).queries for t in (q.text, q.reverse_text or "")]
    tok = build_word_tokenizer(texts, max_len=16)
    d = tmp_path_factory.mktemp("ckpt")
    Blip2ForImageTextRetrieval(tiny_blip2_config(TINY, len(tok))).save_pretrained(d / "blip2")
    CLIPModel(tiny_clip_config(TINY, tok)).save_pretrained(d / "clip")
    for name in ("blip2", "clip"):
        tok.save_pretrained(d / name)
    return {"qformer_cir": d / "blip2", "detailfusion": d / "blip2", "clip4cir": d / "clip"}


def _cfg(kind, ckpt, out, split="train", steps=2):
    model = TINY.model_copy(update={"kind": kind, "size": "real", "checkpoint": str(ckpt), "freeze_vision": False})
    return TrainConfig(model=model, stage=STAGE[kind], out_dir=out, progress=False, num_threads=1,
                       data={"batch_size": 4, "max_text_len": 16, "split": split},
                       optim={"lr": 1e-3, "max_steps": steps, "warmup_steps": 1, "schedule": "cosine"})


@pytest.mark.parametrize("kind", ["qformer_cir", "detailfusion", "clip4cir"])
def test_each_kind_finetunes_on_the_official_layouts_and_evaluates_on_each(kind, roots, checkpoints, tmp_path):
    ckpt = checkpoints[kind]
    result = finetune(roots["cirr"], _cfg(kind, ckpt, tmp_path / "cirr"))
    assert len(result.history) == 2 and ("p2p" in result.history[0]) == (kind != "detailfusion")
    finetune(roots["fashioniq"], _cfg(kind, ckpt, tmp_path / "fiq", steps=1))
    ecfg = EvalConfig(batch_size=4, max_text_len=16)
    cirr = evaluate_folder(result.model_dir, roots["cirr"], "val", cfg=ecfg, out_dir=tmp_path / "e1")
    assert cirr["metrics"]["n_gallery"] == 8 and {"R@1", "Rsubset@3", "Avg"} <= set(cirr["metrics"])
    assert "Rsubset@1" in table(cirr)
    fiq = evaluate_folder(result.model_dir, roots["fashioniq"], "val", cfg=ecfg)["metrics"]
    assert {"dress_R@10", "shirt_R@50", "average"} <= set(fiq)
    circo = evaluate_folder(result.model_dir, roots["circo"], "val", cfg=ecfg)["metrics"]
    assert 0 <= circo["mAP@5"] <= 100
    test = evaluate_folder(result.model_dir, roots["cirr"], "test", cfg=ecfg, out_dir=tmp_path / "e2")
    assert test["submission_files"] == ["cirr_recall.json", "cirr_recall_subset.json"]
    assert json.loads((tmp_path / "e2" / "cirr_recall.json").read_text())["metric"] == "recall"
    evaluate_folder(result.model_dir, roots["circo"], "test", cfg=ecfg, out_dir=tmp_path / "e3")
    assert len(json.loads((tmp_path / "e3" / "circo_submission.json").read_text())) == 8


def test_clip4cir_stages_and_a_clip_checkpoint_under_the_wrong_kind(checkpoints, tmp_path, roots):
    with pytest.raises(ValueError, match="clip4cir"):
        create_model(_cfg("qformer_cir", checkpoints["clip4cir"], tmp_path).model)
    first = finetune(roots["cirr"], _cfg("clip4cir", checkpoints["clip4cir"], tmp_path / "s1", steps=1)
                     .model_copy(update={"stage": "c4c_sum"}))
    assert bool(first.model.sum_only) and not any(p.requires_grad for p in first.model.combiner.parameters())
    second = finetune(roots["cirr"], _cfg("clip4cir", checkpoints["clip4cir"], tmp_path / "s2", steps=1)
                      .model_copy(update={"stage": "c4c_combiner", "init_from": first.model_dir}))
    trainable = {n.split(".")[0] for n, p in second.model.named_parameters() if p.requires_grad}
    assert trainable == {"combiner"} and not bool(second.model.sum_only)
