"""Training checkpoints without pickle: trainable weights and optimizer tensors as safetensors, the rest as JSON.

Only weights that train are saved: the frozen rest is rebuilt the same way on resume (same seed or the
same ``init_from``), so a real-size run does not write its frozen ViT-G at every checkpoint.
A checkpoint folder appears under its final name only when complete (written aside, then renamed).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

PREFIX = "ckpt-"
STATE_FILE = "state.json"


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The weights that receive gradients in the current stage."""
    return {n: p.detach().contiguous().cpu() for n, p in model.named_parameters() if p.requires_grad}


def _flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, state in sd["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"state.{idx}.{key}"] = value.detach().contiguous().cpu()
            else:
                scalars[f"{idx}.{key}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("state."):  # rng.* entries are not optimizer state
            _, idx, key = name.split(".", 2)
            state.setdefault(int(idx), {})[key] = value
    for name, value in meta["scalars"].items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(out_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> Path:
    """Write ``ckpt-<step>/`` (weights, optimizer, RNG, ``state``) atomically; returns its path."""
    final = Path(out_dir) / f"{PREFIX}{state['step']:08d}"
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(trainable_state(model), str(tmp / "model.safetensors"))
    opt_tensors, opt_meta = _flatten_optimizer(optimizer)
    opt_tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, st in enumerate(torch.cuda.get_rng_state_all()):
            opt_tensors[f"rng.cuda.{i}"] = st
    save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
    (tmp / STATE_FILE).write_text(json.dumps({**state, "optimizer": opt_meta}))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return final


def last_checkpoint(out_dir: Path) -> Path | None:
    """The newest complete checkpoint in ``out_dir``, or None."""
    found = sorted(p for p in Path(out_dir).glob(f"{PREFIX}*") if (p / STATE_FILE).exists())
    return found[-1] if found else None


def load_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore weights, optimizer and torch RNG from ``path``; returns the saved ``state``."""
    weights = load_file(str(path / "model.safetensors"))
    expected = set(trainable_state(model))
    if set(weights) != expected:
        raise ValueError(f"{path}: checkpoint weights do not match this model and stage "
                         f"({len(set(weights) ^ expected)} names differ); was the config changed?")
    model.load_state_dict(weights, strict=False)
    tensors = load_file(str(path / "optimizer.safetensors"))
    state = json.loads((path / STATE_FILE).read_text())
    optimizer.load_state_dict(_unflatten_optimizer(tensors, state.pop("optimizer")))
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[f"rng.cuda.{i}"] for i in range(sum(k.startswith("rng.cuda.") for k in tensors))]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    return state
