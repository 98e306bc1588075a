"""Training loops: ``pretrain`` on synthetic shards, ``finetune`` on the annotated seed set.

Each phase writes into ``cfg.out_dir``: checkpoints (resumed from the last one), the final model in
``model/``, ``loss.png``, ``history.jsonl`` and the resolved ``train_config.json``.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from trainers.accel import fit
from trainers.config import TrainConfig
from trainers.data import MemoryTriplets, ParquetTriplets, Row
from trainers.factory import (build_word_tokenizer, create_model, load_model, load_saved_tokenizer,
                              load_tokenizer, save_model)

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
    """Train on the annotated seed set: a list of rows (shard column names), a cirforge dataset folder, or a
    CIRR / FashionIQ folder in its official layout (split ``cfg.data.split``, with the authors' reverse texts)."""
    if isinstance(seed_rows, (str, Path)):
        from trainers.benchmarks import detect, read

        if detect(seed_rows) is None:
            return pretrain(seed_rows, cfg)
        split = read(seed_rows, cfg.data.split)
        log.info("%s: %s", split.name, split.counts())
        seed_rows = split.training_rows()
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
    """One phase: build or load the model, run the accelerate loop (``trainers.accel.fit``), save the model,
    its history and loss curve (the main process writes; every process returns the trained model)."""
    from accelerate import PartialState

    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    out = Path(cfg.out_dir)
    state = PartialState(cpu=cfg.device == "cpu")
    with state.main_process_first():  # the main process writes the config and a tiny tokenizer first
        if state.is_main_process:
            out.mkdir(parents=True, exist_ok=True)
            (out / "train_config.json").write_text(cfg.model_dump_json(indent=2))
        model, tokenizer = _model_and_tokenizer(cfg, texts)
    model.tokenizer = tokenizer
    history = fit(model, tokenizer, source, cfg, out)
    model_dir = out / "model"
    if state.is_main_process:
        save_model(model, model_dir, tokenizer)
        (out / "history.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))
        plot_losses(history, out / "loss.png")
    state.wait_for_everyone()
    return TrainResult(model=model, tokenizer=tokenizer, model_dir=model_dir, history=history)


def plot_losses(history: list[dict], path: Path) -> Path:
    """Total loss and each term against the step, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    steps = [h["step"] for h in history]
    for key in [k for k in (history[0] if history else {}) if k not in ("step", "epoch", "lr")]:
        ax.plot(steps, [h.get(key) for h in history], label=key, linewidth=1.5 if key == "loss" else 0.8)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
