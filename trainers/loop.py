"""Training loops: ``pretrain`` on synthetic shards, ``finetune`` on the annotated seed set.

Each phase writes into ``cfg.out_dir``: checkpoints (resumed from the last one), the final model in
``model/``, ``loss.png``, ``history.jsonl`` and the resolved ``train_config.json``.
"""
from __future__ import annotations

import itertools
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from tqdm.auto import tqdm

from trainers.checkpoint import last_checkpoint, load_checkpoint, save_checkpoint
from trainers.config import TrainConfig
from trainers.data import MemoryTriplets, ParquetTriplets, Row, collate, row_batches
from trainers.factory import (build_word_tokenizer, create_model, load_model, load_saved_tokenizer,
                              load_tokenizer, save_model, text_length)
from trainers.objectives import stage_losses

log = logging.getLogger(__name__)
TOKENIZER_DIR = "tokenizer"


@dataclass
class TrainResult:
    """What a phase leaves: the model in memory, where it was saved, and the per-step losses."""

    model: torch.nn.Module
    tokenizer: object
    model_dir: Path
    history: list[dict] = field(default_factory=list)


def pretrain(dataset_dir: str | Path, cfg: TrainConfig) -> TrainResult:
    """Train on a cirforge dataset's shards (``<dataset>/data/<split>/*.parquet``), streamed."""
    source = ParquetTriplets(dataset_dir, cfg.data.split)
    return train(source, cfg, texts=lambda: _parquet_texts(source))


def finetune(seed_rows: Sequence[Row] | str | Path, cfg: TrainConfig) -> TrainResult:
    """Train on the annotated seed set: a list of rows (shard column names) or a dataset folder."""
    if isinstance(seed_rows, (str, Path)):
        return pretrain(seed_rows, cfg)
    source = MemoryTriplets(seed_rows)
    return train(source, cfg, texts=lambda: _row_texts(source.data))


def _row_texts(rows):
    for r in rows:
        yield r["modification_text"]
        if r.get("reverse_text"):
            yield r["reverse_text"]


def _parquet_texts(source: ParquetTriplets):
    import pyarrow.parquet as pq

    for f in source.files:
        for rb in pq.ParquetFile(f).iter_batches(columns=["modification_text", "reverse_text"]):
            yield from _row_texts(rb.to_pylist())


def _model_and_tokenizer(cfg: TrainConfig, texts):
    """Start from ``init_from`` when given; else build. A tiny tokenizer is frozen in out_dir on first run."""
    if cfg.init_from is not None:
        return load_model(cfg.init_from), load_saved_tokenizer(cfg.init_from)
    if cfg.model.size == "real":
        return create_model(cfg.model, seed=cfg.seed), load_tokenizer(cfg.model)
    tok_dir = cfg.out_dir / TOKENIZER_DIR
    if tok_dir.exists():
        tokenizer = load_saved_tokenizer(tok_dir)
    else:
        tokenizer = build_word_tokenizer(texts(), max_len=cfg.data.max_text_len)
        tokenizer.save_pretrained(tok_dir)
    return create_model(cfg.model, tokenizer, seed=cfg.seed), tokenizer


def train(source, cfg: TrainConfig, texts=lambda: iter(())) -> TrainResult:
    """The loop: AdamW on the stage's trainable weights, checkpoints, resume, loss curve."""
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_config.json").write_text(cfg.model_dump_json(indent=2))
    model, tokenizer = _model_and_tokenizer(cfg, texts)
    model.tokenizer = tokenizer
    device = resolve_device(cfg.device)
    model.to(device)
    model.set_stage(cfg.stage)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay, betas=cfg.optim.betas)
    torch.manual_seed(cfg.seed)
    step, history = 0, []
    ckpt = last_checkpoint(out) if cfg.resume else None
    if ckpt is not None:
        state = load_checkpoint(ckpt, model, opt)
        step, history = state["step"], state["history"]
        log.info("resuming %s at step %d", ckpt, step)
    # The row order is a pure function of (seed, epoch): skipping `step` batches lands where we stopped.
    seed = cfg.seed if cfg.data.shuffle else None
    batches = row_batches(source, cfg.data.batch_size, seed=seed, buffer=cfg.data.shuffle_buffer)
    batches = itertools.islice(batches, step, None)
    max_len = text_length(model, cfg.data.max_text_len)
    model.train()
    bar = tqdm(total=cfg.optim.max_steps, initial=step, disable=not cfg.progress, desc=cfg.stage)
    while step < cfg.optim.max_steps:
        epoch, rows = next(batches)
        batch = collate(rows, tokenizer, _image_size(model), max_len, getattr(source, "root", None)).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
            total, parts = stage_losses(model, batch, cfg.stage, cfg.loss)
        opt.zero_grad(set_to_none=True)
        total.backward()
        if cfg.optim.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
        opt.step()
        step += 1
        history.append({"step": step, "epoch": epoch, "loss": float(total.detach()), **parts})
        bar.update(1)
        bar.set_postfix(loss=f"{history[-1]['loss']:.4f}")
        if step % cfg.checkpoint_every == 0 or step == cfg.optim.max_steps:
            save_checkpoint(out, model, opt, {"step": step, "history": history})
    bar.close()
    model_dir = save_model(model, out / "model", tokenizer)
    (out / "history.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))
    plot_losses(history, out / "loss.png")
    return TrainResult(model=model, tokenizer=tokenizer, model_dir=model_dir, history=history)


def resolve_device(name: str) -> torch.device:
    """'auto' is the first GPU when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _image_size(model) -> int:
    return model.blip2_config.vision_config.image_size


def plot_losses(history: list[dict], path: Path) -> Path:
    """Total loss and each term against the step, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    steps = [h["step"] for h in history]
    for key in [k for k in (history[0] if history else {}) if k not in ("step", "epoch")]:
        ax.plot(steps, [h.get(key) for h in history], label=key, linewidth=1.5 if key == "loss" else 0.8)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
