"""Training on one CPU, one GPU or many (``accelerate launch``): the parts the loop needs.

The global batch (``train.batch_size`` pairs an optimizer step) is the same on any hardware: each
process takes its share of it (``rank::world``) and cuts that into ``train.grad_accum``
micro-batches, so the learning-rate schedule and the data order do not depend on the GPU count.
On CPU with one process and no accumulation the loop is the plain one, to the digit.
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import nn

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def make_accelerator(train_cfg):
    """An ``accelerate.Accelerator`` for ``train.mixed_precision`` (auto: bf16 on a GPU, none on CPU)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    mp = train_cfg.mixed_precision
    if mp == "auto":
        mp = "bf16" if torch.cuda.is_available() else "no"
    if AcceleratorState._shared_state and AcceleratorState().mixed_precision != mp:
        # one process trains with one setting; a second run in the same process (tests) may differ
        AcceleratorState._reset_state(reset_partial_state=False)
    return Accelerator(mixed_precision=mp, cpu=not torch.cuda.is_available())


def hold_frozen_in(model, accelerator) -> None:
    """Frozen vision encoder and LLM in the compute dtype (bf16: half the memory of fp32 weights);
    the trained parts stay fp32 (the optimizer's master weights) and run under autocast."""
    dtype = DTYPES.get(accelerator.mixed_precision)
    if dtype is None or model.train_all:
        return
    model.vision_model.to(dtype)
    for name, p in model.language_model.named_parameters():
        if not p.requires_grad:  # LoRA adapters stay fp32
            p.data = p.data.to(dtype)


class PairLoss(nn.Module):
    """The generator's loss as a ``forward``, so DDP (``accelerator.prepare``) sees every step."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, loss_fn):
        # a closure over the batch: DDP passes it through untouched (it would copy a dataclass of data)
        return loss_fn(self.model)


def micro_batches(positions, rank: int, world: int, accum: int) -> list[np.ndarray]:
    """This process's micro-batches of one global batch (``positions``: pair indices)."""
    mine = np.asarray(positions)[rank::world]
    if len(mine) < accum:
        raise ValueError(f"train.batch_size gives {len(mine)} pairs to process {rank} of {world}, fewer than "
                         f"train.grad_accum={accum}: raise batch_size or lower grad_accum")
    return [m for m in np.array_split(mine, accum)]


def sync_unless(accelerator, wrapped, last: bool):
    """Gradients are all-reduced on the last micro-batch only (DDP ``no_sync`` before it)."""
    return contextlib.nullcontext() if last else accelerator.no_sync(wrapped)
