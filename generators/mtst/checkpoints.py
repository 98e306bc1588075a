"""Resumable training state of the MTST generator: the model folder, the optimizer's tensors
(safetensors, never pickle) and a small JSON; and the loss curve."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from generators.mtst.model import MTSTGenerator

KEEP_CHECKPOINTS = 2


def save_checkpoint(run_dir: Path, model: MTSTGenerator, opt: torch.optim.Optimizer, step: int, losses) -> None:
    ckpts = run_dir / "checkpoints"
    tmp = ckpts / f"tmp-step-{step:07d}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tensors, state = {}, {}
    for i, s in opt.state_dict()["state"].items():
        state[str(i)] = {}
        for k, v in s.items():
            if torch.is_tensor(v) and v.ndim > 0:
                tensors[f"{i}.{k}"] = v.contiguous()
            else:
                state[str(i)][k] = float(v)
    save_file(tensors, tmp / "optimizer.safetensors")
    (tmp / "trainer_state.json").write_text(json.dumps({"step": step, "losses": losses, "scalars": state}))
    tmp.rename(ckpts / f"step-{step:07d}")
    for old in sorted(ckpts.glob("step-*"))[:-KEEP_CHECKPOINTS]:
        shutil.rmtree(old)


def last_checkpoint(run_dir: Path) -> Path | None:
    found = sorted((run_dir / "checkpoints").glob("step-*"))
    return found[-1] if found else None


def load_trainer_state(ckpt: Path, opt: torch.optim.Optimizer) -> tuple[int, list[float]]:
    meta = json.loads((ckpt / "trainer_state.json").read_text())
    tensors = load_file(ckpt / "optimizer.safetensors")
    sd = opt.state_dict()
    state = {}
    for i, scalars in meta["scalars"].items():
        s = {k: torch.tensor(v) for k, v in scalars.items()}
        s.update({k.split(".", 1)[1]: v for k, v in tensors.items() if k.split(".", 1)[0] == i})
        state[int(i)] = s
    opt.load_state_dict({"state": state, "param_groups": sd["param_groups"]})
    return meta["step"], list(meta["losses"])


def plot_losses(losses: list[float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(range(1, len(losses) + 1), losses, lw=0.8, alpha=0.5, label="step")
    if len(losses) >= 20:
        k = max(5, len(losses) // 50)
        smooth = np.convolve(losses, np.ones(k) / k, mode="valid")
        ax.plot(range(k, len(losses) + 1), smooth, lw=1.5, label=f"mean of {k}")
    ax.set_xlabel("step")
    ax.set_ylabel("LM loss (text tokens)")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
