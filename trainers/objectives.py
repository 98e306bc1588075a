"""Which losses each training stage adds up, on a model and a batch (the losses themselves are pure)."""
from __future__ import annotations

import torch

from trainers import losses as L
from trainers.config import LossConfig
from trainers.data import TripletBatch
from trainers.qformer import QFormerBranch


def _vision_feats(vision, batch: TripletBatch, with_negatives: bool) -> dict[str, torch.Tensor | None]:
    """Reference, target and existing-negative images through the vision tower in one pass."""
    b = len(batch)
    mask = batch.neg_mask.reshape(-1)
    negs = batch.negatives.reshape(-1, *batch.negatives.shape[2:])[mask] if with_negatives else batch.reference[:0]
    feats = vision(torch.cat([batch.reference, batch.target, negs]))
    return {"ref": feats[:b], "tgt": feats[b : 2 * b], "neg": feats[2 * b :] if len(negs) else None}


def _neg_tokens(branch: QFormerBranch, neg_feats: torch.Tensor | None, neg_mask: torch.Tensor) -> torch.Tensor | None:
    """FBCIR negatives as (B,2,Q,E) tokens, zeros where a row has none (masked out of the loss)."""
    if neg_feats is None:
        return None
    tokens = branch.image_tokens(neg_feats)
    flat = neg_mask.reshape(-1)
    full = tokens.new_zeros(flat.shape[0], *tokens.shape[1:])
    full[flat] = tokens
    return full.reshape(*neg_mask.shape, *tokens.shape[1:])


def _temp(branch_temp: torch.Tensor, cfg: LossConfig) -> torch.Tensor:
    return L.clamp_temperature(branch_temp, cfg.min_temperature, cfg.max_temperature)


def _branch_q2t(branch: QFormerBranch, feats, batch: TripletBatch, cfg: LossConfig, *, with_reference: bool):
    """L_q2t (or L_DI when ``with_reference``) for one branch; also returns what PTHA reuses."""
    fused, _, _ = branch.fuse(feats["ref"], batch.input_ids, batch.attention_mask)
    tgt_tokens = branch.image_tokens(feats["tgt"])
    negs = _neg_tokens(branch, feats["neg"], batch.neg_mask)
    temp = _temp(branch.temp, cfg)
    kw = dict(neg_tokens=negs, neg_mask=batch.neg_mask if negs is not None else None,
              label_smoothing=cfg.label_smoothing)
    if with_reference:
        loss = L.di_loss(fused, tgt_tokens, branch.image_tokens(feats["ref"]), temp, **kw)
    else:
        loss = L.q2t_loss(fused, tgt_tokens, temp, **kw)
    return loss, fused, tgt_tokens, temp


def stage_losses(model, batch: TripletBatch, stage: str, cfg: LossConfig) -> tuple[torch.Tensor, dict[str, float]]:
    """(weighted total, each unweighted term as a float) for one training step of ``stage``."""
    if stage in ("ptha", "q2t") and hasattr(model, "branch"):
        parts, weights = _ptha(model, batch, stage, cfg)
    elif stage in ("ptha", "q2t", "c4c_sum", "c4c_combiner"):
        parts, weights = _query_target(model, batch, stage, cfg)
    elif stage == "df_di":
        feats = _vision_feats(model.vision, batch, cfg.fbcir)
        parts = {"di": _branch_q2t(model.di, feats, batch, cfg, with_reference=True)[0]}
        weights = {"di": 1.0}
    elif stage == "df_joint":
        feats = _vision_feats(model.vision, batch, cfg.fbcir)  # once for both branches
        parts = {
            "di": _branch_q2t(model.di, feats, batch, cfg, with_reference=True)[0],
            "gm": _branch_q2t(model.gm, feats, batch, cfg, with_reference=False)[0],
        }
        weights = {"di": 1.0, "gm": cfg.gamma}
    elif stage == "df_compositor":
        parts, weights = {"c": _compositor(model, batch, cfg)}, {"c": 1.0}
    else:
        raise ValueError(f"unknown stage {stage!r}")
    total = L.weighted_total(parts, weights)
    return total, {k: float(v.detach()) for k, v in parts.items()}


def _ptha(model, batch, stage, cfg):
    branch = model.branch
    feats = _vision_feats(model.vision, batch, cfg.fbcir)
    q2t, fused, tgt_tokens, temp = _branch_q2t(branch, feats, batch, cfg, with_reference=False)
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
        reverse, _, _ = branch.fuse(feats["tgt"][has], batch.reverse_ids[has], batch.reverse_mask[has])
        parts["p2p"] = L.p2p_loss(fused[has], reverse)
        weights["p2p"] = cfg.p2p
    return parts, weights


def _own_negatives(model, query, batch, cfg):
    """Each row's FBCIR negatives scored against its own query (B,2), and their mask; (None, None) if none."""
    if not (cfg.fbcir and batch.neg_mask.any()):
        return None, None
    m = batch.neg_mask.reshape(-1)
    enc = model.encode_gallery(batch.negatives.reshape(-1, *batch.negatives.shape[2:])[m])
    own = {}
    for k, v in enc.items():
        full = v.new_zeros(m.shape[0], *v.shape[1:])
        full[m] = v
        own[k] = full.reshape(*batch.neg_mask.shape, *v.shape[1:])
    return model.score_own(query, own), batch.neg_mask


def _compositor(model, batch, cfg):
    query = model.encode_query(batch.reference, batch.input_ids, batch.attention_mask)
    scores = model.score(query, model.encode_gallery(batch.target))
    extra, mask = _own_negatives(model, query, batch, cfg)
    return L.info_nce(scores, _temp(model.compositor.temp, cfg), extra=extra, extra_mask=mask,
                      label_smoothing=cfg.label_smoothing)


def _query_target(model, batch, stage, cfg):
    """Any model through its public interface (CLIP4Cir): L_q2t; for ptha also the text term and L_p2p."""
    query = model.encode_query(batch.reference, batch.input_ids, batch.attention_mask)
    gallery = model.encode_gallery(batch.target)
    temp = _temp(model.temp, cfg)
    extra, mask = _own_negatives(model, query, batch, cfg)
    smooth = cfg.label_smoothing
    parts = {"q2t": L.info_nce(model.score(query, gallery), temp, extra=extra, extra_mask=mask, label_smoothing=smooth)}
    weights = {"q2t": cfg.q2t if stage in ("ptha", "q2t") else 1.0}
    if stage != "ptha":
        return parts, weights
    if cfg.t2t > 0:  # text feature against the target images (text_to_target)
        text = {"fused": model.encode_text(batch.input_ids, batch.attention_mask)}
        parts["t2t"], weights["t2t"] = L.info_nce(model.score(text, gallery), temp, label_smoothing=smooth), cfg.t2t
    has = batch.has_reverse
    if cfg.p2p > 0 and has.any():
        reverse = model.encode_query(batch.target[has], batch.reverse_ids[has], batch.reverse_mask[has])["fused"]
        parts["p2p"], weights["p2p"] = L.p2p_loss(query["fused"][has], reverse), cfg.p2p
    return parts, weights
