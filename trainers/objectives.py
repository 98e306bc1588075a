"""Which losses each training stage adds up, on a model and a batch (the losses themselves are pure)."""
from __future__ import annotations

import torch

from trainers import losses as L
from trainers.config import LossConfig
from trainers.data import TripletBatch
from trainers.qformer import QFormerBranch


def _neg_tokens(branch: QFormerBranch, vision, batch: TripletBatch) -> torch.Tensor | None:
    """FBCIR negatives as (B,2,Q,E) tokens; only the ones that exist go through the model."""
    mask = batch.neg_mask.reshape(-1)
    if not mask.any():
        return None
    flat = batch.negatives.reshape(-1, *batch.negatives.shape[2:])
    tokens = branch.image_tokens(vision(flat[mask]))
    full = tokens.new_zeros(mask.shape[0], *tokens.shape[1:])
    full[mask] = tokens
    return full.reshape(*batch.neg_mask.shape, *tokens.shape[1:])


def _temp(branch_temp: torch.Tensor, cfg: LossConfig) -> torch.Tensor:
    return L.clamp_temperature(branch_temp, cfg.min_temperature, cfg.max_temperature)


def _branch_q2t(branch, vision, batch, cfg: LossConfig, *, with_reference: bool):
    """L_q2t (or L_DI when ``with_reference``) for one branch; also returns what PTHA reuses."""
    ref_feats, tgt_feats = vision(batch.reference), vision(batch.target)
    fused, _, _ = branch.fuse(ref_feats, batch.input_ids, batch.attention_mask)
    tgt_tokens = branch.image_tokens(tgt_feats)
    negs = _neg_tokens(branch, vision, batch) if cfg.fbcir else None
    neg_mask = batch.neg_mask if negs is not None else None
    temp = _temp(branch.temp, cfg)
    kw = dict(neg_tokens=negs, neg_mask=neg_mask, label_smoothing=cfg.label_smoothing)
    if with_reference:
        loss = L.di_loss(fused, tgt_tokens, branch.image_tokens(ref_feats), temp, **kw)
    else:
        loss = L.q2t_loss(fused, tgt_tokens, temp, **kw)
    return loss, fused, tgt_tokens, tgt_feats, temp


def stage_losses(model, batch: TripletBatch, stage: str, cfg: LossConfig) -> tuple[torch.Tensor, dict[str, float]]:
    """(weighted total, each unweighted term as a float) for one training step of ``stage``."""
    if stage in ("ptha", "q2t"):
        parts, weights = _ptha(model, batch, stage, cfg)
    elif stage == "df_di":
        parts = {"di": _branch_q2t(model.di, model.vision, batch, cfg, with_reference=True)[0]}
        weights = {"di": 1.0}
    elif stage == "df_joint":
        parts = {
            "di": _branch_q2t(model.di, model.vision, batch, cfg, with_reference=True)[0],
            "gm": _branch_q2t(model.gm, model.vision, batch, cfg, with_reference=False)[0],
        }
        weights = {"di": 1.0, "gm": cfg.gamma}
    elif stage == "df_compositor":
        parts, weights = {"c": _compositor(model, batch, cfg)}, {"c": 1.0}
    else:
        raise ValueError(f"unknown stage {stage!r}")
    total = L.weighted_total(parts, weights)
    return total, {k: float(v.detach()) for k, v in parts.items()}


def _ptha(model, batch, stage, cfg):
    branch, vision = model.branch, model.vision
    q2t, fused, tgt_tokens, tgt_feats, temp = _branch_q2t(branch, vision, batch, cfg, with_reference=False)
    parts, weights = {"q2t": q2t}, {"q2t": cfg.q2t}
    if stage == "q2t":
        return parts, weights
    if cfg.t2t > 0:
        text = branch.text(batch.input_ids, batch.attention_mask)
        other = tgt_tokens if cfg.t2t_mode == "text_to_target" else text
        query = text if cfg.t2t_mode == "text_to_target" else fused
        parts["t2t"] = L.t2t_loss(query, other, temp, label_smoothing=cfg.label_smoothing)
        weights["t2t"] = cfg.t2t
    has = batch.has_reverse
    if cfg.p2p > 0 and has.any():
        # Reverse prototype: the target composed with the reverse text should land on the forward one.
        reverse, _, _ = branch.fuse(tgt_feats[has], batch.reverse_ids[has], batch.reverse_mask[has])
        parts["p2p"] = L.p2p_loss(fused[has], reverse)
        weights["p2p"] = cfg.p2p
    return parts, weights


def _compositor(model, batch, cfg):
    query = model.encode_query(batch.reference, batch.input_ids, batch.attention_mask)
    scores = model.score(query, model.encode_gallery(batch.target))
    extra = mask = None
    if cfg.fbcir and batch.neg_mask.any():
        m = batch.neg_mask.reshape(-1)
        flat = batch.negatives.reshape(-1, *batch.negatives.shape[2:])[m]
        enc = model.encode_gallery(flat)
        own = {}
        for k, v in enc.items():
            full = v.new_zeros(m.shape[0], *v.shape[1:])
            full[m] = v
            own[k] = full.reshape(*batch.neg_mask.shape, *v.shape[1:])
        extra, mask = model.score_own(query, own), batch.neg_mask
    return L.info_nce(scores, _temp(model.compositor.temp, cfg), extra=extra, extra_mask=mask,
                      label_smoothing=cfg.label_smoothing)
