"""Retrieval losses as small pure functions on tensors (no model, no config object).

Shapes: B queries, N gallery items, Q query tokens per image, E embedding size, K extra negatives.
Similarities are dot products of L2-normalized features; a temperature tau divides them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def max_sim(query: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """(B,E) x (N,Q,E) -> (B,N): each image scored by its best-matching query token (SPRC)."""
    return torch.einsum("be,nqe->bnq", query, tokens).amax(dim=-1)


def own_max_sim(query: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """(B,E) x (B,K,Q,E) -> (B,K): row i scored only against its own K images."""
    return torch.einsum("be,bkqe->bkq", query, tokens).amax(dim=-1)


def info_nce(
    sim: torch.Tensor,
    temperature: torch.Tensor | float,
    *,
    extra: torch.Tensor | None = None,
    extra_mask: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Cross-entropy of row i on column i of ``sim`` (B,B), with optional per-row extra negatives (B,K).

    ``extra_mask`` (B,K) marks which extras exist (a null FBCIR negative is left out of the
    denominator). Label smoothing spreads ``label_smoothing`` uniformly over the valid columns only,
    which equals PyTorch's ``cross_entropy(label_smoothing=...)`` when every column is valid.
    """
    b = sim.shape[0]
    logits = sim
    valid = torch.ones_like(sim, dtype=torch.bool)
    if extra is not None:
        mask = torch.ones_like(extra, dtype=torch.bool) if extra_mask is None else extra_mask.bool()
        logits = torch.cat([sim, extra], dim=1)
        valid = torch.cat([valid, mask], dim=1)
    logits = logits / temperature
    # -inf on missing columns: they vanish from the softmax and from the smoothing average.
    logits = logits.masked_fill(~valid, float("-inf"))
    logp = torch.log_softmax(logits, dim=1)
    idx = torch.arange(b, device=sim.device)
    nll = -logp[idx, idx]
    if label_smoothing == 0.0:
        return nll.mean()
    smooth = -(logp.masked_fill(~valid, 0.0)).sum(dim=1) / valid.sum(dim=1)
    return ((1.0 - label_smoothing) * nll + label_smoothing * smooth).mean()


def q2t_loss(
    query: torch.Tensor,
    target_tokens: torch.Tensor,
    temperature: torch.Tensor | float,
    *,
    neg_tokens: torch.Tensor | None = None,
    neg_mask: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """L_q2t: fused query (B,E) vs the batch's targets (B,Q,E) by max-sim; FBCIR negatives (B,K,Q,E) optional."""
    sim = max_sim(query, target_tokens)
    extra = own_max_sim(query, neg_tokens) if neg_tokens is not None else None
    return info_nce(sim, temperature, extra=extra, extra_mask=neg_mask, label_smoothing=label_smoothing)


def t2t_loss(
    text: torch.Tensor,
    other: torch.Tensor,
    temperature: torch.Tensor | float,
    *,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """L_t2t: text feature (B,E) vs target tokens (B,Q,E) (text-to-target) or vs features (B,E) (text-text)."""
    sim = max_sim(text, other) if other.dim() == 3 else text @ other.t()
    return info_nce(sim, temperature, label_smoothing=label_smoothing)


def p2p_loss(forward_proto: torch.Tensor, reverse_proto: torch.Tensor) -> torch.Tensor:
    """L_p2p (PTHA): MSE pulling the forward prototype to the reverse one; the reverse side gets no gradient."""
    return F.mse_loss(forward_proto, reverse_proto.detach())


def di_loss(
    query: torch.Tensor,
    target_tokens: torch.Tensor,
    reference_tokens: torch.Tensor,
    temperature: torch.Tensor | float,
    *,
    neg_tokens: torch.Tensor | None = None,
    neg_mask: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """L_DI (DetailFusion): L_q2t with each row's own reference image added to its denominator."""
    sim = max_sim(query, target_tokens)
    extra = own_max_sim(query, reference_tokens.unsqueeze(1))
    mask = torch.ones_like(extra, dtype=torch.bool)
    if neg_tokens is not None:
        extra = torch.cat([extra, own_max_sim(query, neg_tokens)], dim=1)
        nm = torch.ones(neg_tokens.shape[:2], dtype=torch.bool, device=query.device) if neg_mask is None else neg_mask
        mask = torch.cat([mask, nm.bool()], dim=1)
    return info_nce(sim, temperature, extra=extra, extra_mask=mask, label_smoothing=label_smoothing)


def clamp_temperature(temp: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """The learnable temperature kept in [lo, hi] (BLIP-2 keeps it in [0.001, 0.5])."""
    return temp.clamp(lo, hi)


def weighted_total(parts: dict[str, torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
    """Sum of ``weights[name] * parts[name]``; a part without a weight counts once."""
    total = None
    for name, value in parts.items():
        term = weights.get(name, 1.0) * value
        total = term if total is None else total + term
    if total is None:
        raise ValueError("no loss terms to add: every weight is zero for this stage")
    return total
