"""Retrieval metrics on score matrices (queries x gallery), pure functions; values in percent.

Ties count against the target: an image scored the same as the target ranks ahead of it, so a model
that scores everything equally gets no credit.
"""
from __future__ import annotations

from typing import Sequence

import torch


def _masked(scores: torch.Tensor, exclude_idx: torch.Tensor | None = None, keep: torch.Tensor | None = None) -> torch.Tensor:
    s = scores.clone().float()
    if keep is not None:
        s = s.masked_fill(~keep.bool(), float("-inf"))
    if exclude_idx is not None:
        rows = torch.arange(s.shape[0])
        valid = exclude_idx >= 0  # -1: nothing to exclude for this query
        s[rows[valid], exclude_idx[valid]] = float("-inf")
    return s


def target_ranks(scores: torch.Tensor, target_idx: torch.Tensor, exclude_idx: torch.Tensor | None = None,
                 keep: torch.Tensor | None = None) -> torch.Tensor:
    """0-based rank of each query's target: how many candidates score at least as high, minus itself."""
    s = _masked(scores, exclude_idx, keep)
    target = s.gather(1, target_idx.view(-1, 1))
    return (s >= target).sum(dim=1) - 1


def recall_at_k(scores: torch.Tensor, target_idx: torch.Tensor, ks: Sequence[int] = (1, 5, 10, 50),
                exclude_idx: torch.Tensor | None = None) -> dict[str, float]:
    """Recall@K (CIRR, FashionIQ): share of queries whose target is in the top K; ``exclude_idx`` drops the reference."""
    r = target_ranks(scores, target_idx, exclude_idx)
    return {f"R@{k}": 100.0 * float((r < k).float().mean()) for k in ks}


def recall_subset_at_k(scores: torch.Tensor, target_idx: torch.Tensor, group_mask: torch.Tensor,
                       ks: Sequence[int] = (1, 2, 3), exclude_idx: torch.Tensor | None = None) -> dict[str, float]:
    """CIRR Recall_subset@K: the gallery cut to the query's group (``group_mask`` (Q,G)), reference removed."""
    r = target_ranks(scores, target_idx, exclude_idx, keep=group_mask)
    return {f"Rs@{k}": 100.0 * float((r < k).float().mean()) for k in ks}


def fashioniq_recall(scores: torch.Tensor, target_idx: torch.Tensor) -> dict[str, float]:
    """FashionIQ: R@10, R@50 and their mean."""
    out = recall_at_k(scores, target_idx, ks=(10, 50))
    out["R_avg"] = (out["R@10"] + out["R@50"]) / 2
    return out


def map_at_k(scores: torch.Tensor, positives: torch.Tensor, ks: Sequence[int] = (5, 10, 25, 50),
             exclude_idx: torch.Tensor | None = None) -> dict[str, float]:
    """CIRCO mAP@K with several ground truths (``positives`` (Q,G) bool):
    AP@K = sum_{k<=K} P@k * rel(k) / min(K, #positives)."""
    s = _masked(scores, exclude_idx)
    # Stable sort on -score keeps the earlier gallery index first on ties.
    order = torch.sort(-s, dim=1, stable=True).indices
    rel = positives.bool().gather(1, order).float()
    hits = rel.cumsum(dim=1)
    prec = hits / torch.arange(1, s.shape[1] + 1, dtype=torch.float32)
    n_pos = positives.bool().sum(dim=1).float()
    out = {}
    for k in ks:
        ap = (prec[:, :k] * rel[:, :k]).sum(dim=1) / torch.clamp(torch.minimum(n_pos, torch.tensor(float(k))), min=1.0)
        out[f"mAP@{k}"] = 100.0 * float(ap.mean())
    return out


def hard_case_recall_at_1(scores: torch.Tensor, valid: torch.Tensor | None = None,
                          names: Sequence[str] = ("target", "neg_text", "neg_image", "reference")) -> dict[str, float]:
    """FBCIR hard case: each query ranks its own small gallery (column 0 the target, then its negatives and
    the reference); R@1 = target strictly on top. Also the share of queries each distractor beat."""
    valid = torch.ones_like(scores, dtype=torch.bool) if valid is None else valid.bool()
    s = scores.float().masked_fill(~valid, float("-inf"))
    best_other = s[:, 1:].max(dim=1)
    out = {"hard_R@1": 100.0 * float((s[:, 0] > best_other.values).float().mean())}
    for j, name in enumerate(names[1 : s.shape[1]], start=1):
        beats = valid[:, j] & (s[:, j] >= s[:, 0])
        n = valid[:, j].sum()
        out[f"hard_lost_to_{name}"] = 100.0 * float(beats.sum() / n) if n > 0 else float("nan")
    return out
