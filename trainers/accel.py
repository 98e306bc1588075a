"""The optimizer loop through ``accelerate``: one process per GPU (DDP over NCCL, or gloo on CPU), micro-batches
accumulated, warmup + cosine learning rate, batches collated by DataLoader worker processes, resumable.

One optimizer step consumes one *global* batch of ``batch_size x grad_accum x processes`` rows, cut into
micro-batches of ``batch_size`` (the contrastive batch: in-batch negatives are the micro-batch's); the
row order is a pure function of (seed, epoch). So one process with ``grad_accum = N`` and N processes
with ``grad_accum = 1`` average the same micro-batch gradients and log the same losses, and a resumed
run skips exactly the global batches already seen.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
from pathlib import Path

import torch
from accelerate import Accelerator, DistributedDataParallelKwargs
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from trainers.checkpoint import last_checkpoint, load_checkpoint, save_checkpoint
from trainers.config import OptimConfig, TrainConfig
from trainers.data import collate, row_batches
from trainers.factory import image_size, text_length
from trainers.objectives import stage_losses

log = logging.getLogger(__name__)


def lr_at(step: int, o: OptimConfig) -> float:
    """Learning rate of optimizer step ``step`` (0-based): linear warmup, then constant or cosine to min_lr_ratio."""
    if step < o.warmup_steps:
        return o.lr * (step + 1) / o.warmup_steps
    if o.schedule == "constant":
        return o.lr
    progress = (step - o.warmup_steps) / max(1, o.max_steps - o.warmup_steps)
    return o.lr * (o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


class TrainStep(nn.Module):
    """The model and its stage's losses as one forward: what DDP wraps (it syncs what forward touched)."""

    def __init__(self, model: nn.Module, stage: str, loss_cfg):
        super().__init__()
        self.model, self.stage, self.loss_cfg = model, stage, loss_cfg

    def forward(self, batch):
        return stage_losses(self.model, batch, self.stage, self.loss_cfg)


class StepBatches(IterableDataset):
    """(epoch, this rank's micro-batches) per optimizer step from ``start`` on; worker w of W collates the
    steps w, w+W, ... (the loader hands them back in step order), reading but not decoding the others."""

    def __init__(self, source, cfg: TrainConfig, tokenizer, size: int, max_len: int, rank: int, world: int, start: int):
        self.source, self.cfg, self.tokenizer = source, cfg, tokenizer
        self.size, self.max_len, self.rank, self.world, self.start = size, max_len, rank, world, start

    def __iter__(self):
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        d, accum = self.cfg.data, self.cfg.optim.grad_accum
        parts = self.world * accum
        seed = self.cfg.seed if d.shuffle else None
        batches = row_batches(self.source, d.batch_size * parts, seed=seed, buffer=d.shuffle_buffer)
        for s, (epoch, rows) in enumerate(batches):
            if s < self.start or (s - self.start) % nw != wid:
                continue
            if len(rows) < parts:
                raise ValueError(f"{len(rows)} rows cannot feed {self.world} processes x {accum} micro-batches")
            cut = [len(rows) * i // parts for i in range(parts + 1)]  # equal parts (a short dataset: near equal)
            mine = [rows[cut[i] : cut[i + 1]] for i in range(self.rank * accum, (self.rank + 1) * accum)]
            root = getattr(self.source, "root", None)
            yield epoch, [collate(m, self.tokenizer, self.size, self.max_len, root) for m in mine]


def _as_is(item):
    return item


def resolve_device(name: str) -> torch.device:
    """'auto' is the first GPU when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def fit(model: nn.Module, tokenizer, source, cfg: TrainConfig, out: Path) -> list[dict]:
    """Train ``model`` in place for ``cfg.optim.max_steps`` optimizer steps; returns the per-step history."""
    acc = Accelerator(cpu=cfg.device == "cpu", device_placement=False,
                      kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=cfg.find_unused_parameters)])
    device = acc.device if acc.num_processes > 1 else resolve_device(cfg.device)
    model.to(device)
    model.set_stage(cfg.stage)
    params = [p for p in model.parameters() if p.requires_grad]
    o = cfg.optim
    opt = torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay, betas=o.betas)
    torch.manual_seed(cfg.seed)
    step, history = 0, []
    ckpt = last_checkpoint(out) if cfg.resume else None
    if ckpt is not None:
        state = load_checkpoint(ckpt, model, opt)
        step, history = state["step"], state["history"]
        log.info("resuming %s at step %d", ckpt, step)
    wrapped = acc.prepare_model(TrainStep(model, cfg.stage, cfg.loss))  # DDP when there are several processes
    if cfg.data.num_workers:
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # forked workers each tokenize
    data = StepBatches(source, cfg, tokenizer, image_size(model), text_length(model, cfg.data.max_text_len),
                       acc.process_index, acc.num_processes, step)
    loader = DataLoader(data, batch_size=None, num_workers=cfg.data.num_workers, collate_fn=_as_is)
    bf16 = cfg.precision == "bf16"
    model.train()
    from tqdm.auto import tqdm

    bar = tqdm(total=o.max_steps, initial=step, disable=not cfg.progress or not acc.is_main_process, desc=cfg.stage)
    batches = iter(loader)
    while step < o.max_steps:
        epoch, micro = next(batches)
        lr = lr_at(step, o)
        for group in opt.param_groups:
            group["lr"] = lr
        sums, keys = None, None
        for a, batch in enumerate(micro):
            last = a == len(micro) - 1
            # Gradients are all-reduced once per optimizer step, on the last micro-batch.
            sync = contextlib.nullcontext() if last or acc.num_processes == 1 else acc.no_sync(wrapped)
            with sync:
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                    total, parts = wrapped(batch.to(device))
                (total / len(micro) if len(micro) > 1 else total).backward()
            keys = list(parts)
            vals = torch.tensor([float(total.detach()), *parts.values()], dtype=torch.float64)
            sums = vals if sums is None else sums + vals
        mean = acc.reduce((sums / len(micro)).to(device), reduction="mean").cpu().tolist()
        if o.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, o.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        history.append({"step": step, "epoch": epoch, "loss": mean[0], **dict(zip(keys, mean[1:])), "lr": lr})
        bar.update(1)
        bar.set_postfix(loss=f"{mean[0]:.4f}")
        if (step % cfg.checkpoint_every == 0 or step == o.max_steps) and acc.is_main_process:
            save_checkpoint(out, model, opt, {"step": step, "history": history})
    bar.close()
    del batches  # stops the workers
    acc.wait_for_everyone()
    return history
