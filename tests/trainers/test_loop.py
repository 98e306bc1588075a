"""Tiny training runs: the loss goes down, checkpoints resume exactly, outputs land in out_dir."""
import json

import torch
from safetensors.torch import load_file

from trainers.config import EvalConfig
from trainers.evaluate import evaluate
from trainers.loop import finetune, pretrain


def _cfg(train_cfg, tmp_path, name, **optim):
    return train_cfg.model_copy(update={"out_dir": tmp_path / name,
                                        "optim": train_cfg.optim.model_copy(update=optim)})


def test_tiny_finetune_reduces_the_loss(train_cfg, tmp_path, rows):
    cfg = _cfg(train_cfg, tmp_path, "ft", max_steps=36, lr=1e-3)
    cfg.stage = "q2t"
    cfg.loss.fbcir = False
    hist = [h["loss"] for h in finetune(rows[:4], cfg).history]
    assert len(hist) == 36
    assert sum(hist[-5:]) / 5 < 0.75 * sum(hist[:5]) / 5, hist


def test_pretrain_writes_model_curve_and_checkpoints(train_cfg, tmp_path, dataset_dir):
    result = pretrain(dataset_dir, _cfg(train_cfg, tmp_path, "pt", max_steps=2))
    out = tmp_path / "pt"
    assert {"model", "loss.png", "history.jsonl", "train_config.json", "tokenizer", "ckpt-00000002"} <= {
        p.name for p in out.iterdir()}
    assert set(result.history[-1]) >= {"q2t", "t2t", "p2p", "loss"}  # stage ptha
    assert (out / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "ckpt-00000002" / "optimizer.safetensors").exists()
    # what a flow calls next: evaluate(saved model folder, dataset folder, cfg) -> dict
    metrics = evaluate(result.model_dir, dataset_dir, EvalConfig(split="train", batch_size=4))
    assert metrics["n_queries"] == 8.0 and 0.0 <= metrics["hard_R@1"] <= 100.0


def test_resume_continues_exactly_where_it_stopped(train_cfg, tmp_path, dataset_dir):
    straight = pretrain(dataset_dir, _cfg(train_cfg, tmp_path, "a", max_steps=4))
    pretrain(dataset_dir, _cfg(train_cfg, tmp_path, "b", max_steps=2))  # "killed" after step 2
    resumed = pretrain(dataset_dir, _cfg(train_cfg, tmp_path, "b", max_steps=4))
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in straight.history]
    a = load_file(str(tmp_path / "a" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "model" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert len((tmp_path / "b" / "history.jsonl").read_text().splitlines()) == 4


def test_same_seed_same_run(train_cfg, tmp_path, rows):
    h1 = finetune(rows, _cfg(train_cfg, tmp_path, "s1", max_steps=2)).history
    h2 = finetune(rows, _cfg(train_cfg, tmp_path, "s2", max_steps=2)).history
    assert h1 == h2


def test_detailfusion_three_stages_chain(train_cfg, tmp_path, rows):
    base = train_cfg.model_copy(update={"model": train_cfg.model.model_copy(update={"kind": "detailfusion"})})
    prev = None
    for stage in ("df_di", "df_joint", "df_compositor"):
        cfg = _cfg(base, tmp_path, stage, max_steps=1).model_copy(update={"stage": stage, "init_from": prev})
        result = finetune(rows, cfg)
        prev = result.model_dir
    meta = json.loads((prev / "cirforge_model.json").read_text())
    assert meta["model"]["kind"] == "detailfusion"
    assert set(result.history[-1]) >= {"c", "loss"}


def test_real_size_path_on_a_tiny_checkpoint(train_cfg, tmp_path, rows, tiny_model_cfg):
    """size='real' loads a BLIP-2 retrieval checkpoint and its tokenizer by path, freezes the vision tower."""
    from transformers import Blip2ForImageTextRetrieval

    from trainers.factory import build_word_tokenizer, tiny_blip2_config

    tok = build_word_tokenizer([r["modification_text"] for r in rows] + [r["reverse_text"] for r in rows])
    Blip2ForImageTextRetrieval(tiny_blip2_config(tiny_model_cfg, len(tok))).save_pretrained(tmp_path / "ckpt")
    tok.save_pretrained(tmp_path / "ckpt")
    real = tiny_model_cfg.model_copy(update={"size": "real", "checkpoint": str(tmp_path / "ckpt")})
    cfg = _cfg(train_cfg, tmp_path, "real", max_steps=2).model_copy(update={"model": real})
    result = finetune(rows, cfg)
    assert not any(p.requires_grad for p in result.model.vision.parameters())
    saved = load_file(str(tmp_path / "real" / "ckpt-00000002" / "model.safetensors"))
    assert saved and not any(k.startswith("vision.") for k in saved)  # frozen weights stay out of checkpoints
