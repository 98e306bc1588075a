"""FBCIR focus diagnosis: occlude reference patches and text tokens one at a time and measure how much
the target-vs-negative score margin drops; the shares of those drops show which modality the model uses.

margin = s(query, target) - max over the row's FBCIR negatives s(query, negative). A piece that the
decision rests on lowers the margin when hidden; drops below zero (hiding helped) count as zero.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from trainers.data import NEGATIVE_COLUMNS, decode_image, image_to_tensor
from trainers.factory import image_size, text_length


@dataclass
class FocusReport:
    """Drops summed over queries; shares are I/(I+T) and T/(I+T); imbalance = |I-T|/(I+T)."""

    image_share: float
    text_share: float
    imbalance: float
    patch_drops: torch.Tensor  # (grid, grid), mean over queries
    base_margin: float  # mean margin before any occlusion
    token_drops: list[list[tuple[str, float]]] = field(default_factory=list)  # per query: (token, drop)
    n_queries: int = 0

    def to_dict(self) -> dict:
        return {"image_share": self.image_share, "text_share": self.text_share, "imbalance": self.imbalance,
                "base_margin": self.base_margin, "n_queries": self.n_queries}


def _occluded_images(px: torch.Tensor, grid: int) -> torch.Tensor:
    """(3,H,W) -> (grid*grid,3,H,W), each with one cell set to 0 (the mean colour after normalization)."""
    h, w = px.shape[1:]
    out = px.unsqueeze(0).repeat(grid * grid, 1, 1, 1)
    for i in range(grid):
        for j in range(grid):
            out[i * grid + j, :, i * h // grid : (i + 1) * h // grid, j * w // grid : (j + 1) * w // grid] = 0.0
    return out


@torch.no_grad()
def focus_diagnosis(model, rows: Sequence[dict], tokenizer=None, grid: int = 4, max_text_len: int = 32,
                    root: Path | None = None) -> FocusReport:
    """Focus shares over triplet rows (shard column names) that have at least one FBCIR negative."""
    tokenizer = tokenizer if tokenizer is not None else model.tokenizer
    was_training = model.training
    model.eval()
    size = image_size(model)
    max_len = text_length(model, max_text_len)
    special = set(tokenizer.all_special_ids)
    img_total = txt_total = 0.0
    patch_sum = torch.zeros(grid, grid)
    margins, token_drops = [], []
    for row in rows:
        negs = [row.get(c) for c in NEGATIVE_COLUMNS if row.get(c) is not None]
        if not negs:
            continue
        ref = image_to_tensor(decode_image(row["reference_image"], root), size)
        cands = torch.stack([image_to_tensor(decode_image(v, root), size) for v in [row["target_image"], *negs]])
        dev = next(iter(model.parameters()), torch.empty(0)).device
        gallery = model.encode_gallery(cands.to(dev))
        enc = tokenizer([row["modification_text"]], padding="max_length", truncation=True, max_length=max_len,
                        return_tensors="pt")
        ids, mask = enc["input_ids"], enc["attention_mask"]
        positions = [j for j in range(ids.shape[1]) if mask[0, j] and int(ids[0, j]) not in special]
        # Batch: the intact query, grid*grid occluded references, then one dropped token each.
        pixels = torch.cat([ref.unsqueeze(0), _occluded_images(ref, grid), ref.expand(len(positions), -1, -1, -1)])
        all_ids = ids.repeat(pixels.shape[0], 1)
        all_mask = mask.repeat(pixels.shape[0], 1)
        for n, j in enumerate(positions):
            all_mask[1 + grid * grid + n, j] = 0
            all_ids[1 + grid * grid + n, j] = tokenizer.pad_token_id
        scores = model.score(model.encode_query(pixels.to(dev), all_ids.to(dev), all_mask.to(dev)), gallery).float().cpu()
        margin = scores[:, 0] - scores[:, 1:].max(dim=1).values
        drops = (margin[0] - margin[1:]).clamp_min(0.0)
        img_drops, txt_drops = drops[: grid * grid], drops[grid * grid :]
        img_total += float(img_drops.sum())
        txt_total += float(txt_drops.sum())
        patch_sum += img_drops.view(grid, grid)
        margins.append(float(margin[0]))
        tokens = tokenizer.convert_ids_to_tokens([int(ids[0, j]) for j in positions])
        token_drops.append(list(zip(tokens, [float(d) for d in txt_drops])))
    model.train(was_training)
    total = img_total + txt_total
    n = len(margins)
    return FocusReport(
        image_share=img_total / total if total > 0 else 0.0,
        text_share=txt_total / total if total > 0 else 0.0,
        imbalance=abs(img_total - txt_total) / total if total > 0 else 0.0,
        patch_drops=patch_sum / max(n, 1),
        base_margin=sum(margins) / n if n else float("nan"),
        token_drops=token_drops,
        n_queries=n,
    )


def plot_focus(report: FocusReport, path: str | Path) -> Path:
    """Bar chart of the two shares, heatmap of mean patch drops, and the first query's token drops."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
    axes[0].bar(["image", "text"], [report.image_share, report.text_share], color=["tab:blue", "tab:orange"])
    axes[0].set_ylim(0, 1)
    axes[0].set_title(f"focus share (imbalance {report.imbalance:.2f})")
    im = axes[1].imshow(report.patch_drops.numpy(), cmap="magma")
    axes[1].set_title("margin drop per occluded patch")
    axes[1].set_xticks([])
    axes[1].set_yticks([])
    fig.colorbar(im, ax=axes[1], fraction=0.046)
    if report.token_drops:
        toks, vals = zip(*report.token_drops[0]) if report.token_drops[0] else ((), ())
        axes[2].bar(range(len(vals)), vals, color="tab:orange")
        axes[2].set_xticks(range(len(toks)), toks, rotation=45, ha="right", fontsize=8)
    axes[2].set_title("drop per removed token (query 1)")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
