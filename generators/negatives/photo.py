"""FBCIR negatives for photos: CLIP margins against the text and the reference (all vectors L2-normalized).

text-aligned margin: cos(neg, text) - cos(ref, text); the negative is neither the target nor the
reference and lies nearer the target than the reference (its *target lead*, cos(neg, tgt) -
cos(neg, ref), above a minimum: the text's change is in it). image-aligned margin:
cos(tgt, text) - cos(neg, text); the negative is close to the reference without being it (or the
target) and does not lead towards the target (target lead below a maximum: the change is not in
it). "Being" an image is a cosine at or above a near-duplicate cut, one per negative kind and
anchor (``Cuts``; the calibration command tunes every one of these rules).
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Anchors:
    """The embeddings a triplet's negatives are measured against."""

    ref: np.ndarray
    tgt: np.ndarray
    text: np.ndarray

    @property
    def ref_tgt(self) -> float:
        return float(self.ref @ self.tgt)


@dataclass(frozen=True)
class Cuts:
    """The image rules' thresholds: cos at or above a ``*_duplicate`` is that image; a text-aligned
    negative's target lead must be above ``text_min_target_lead``, an image-aligned one's below
    ``image_max_target_lead``."""

    text_target_duplicate: float = 0.97
    text_reference_duplicate: float = 0.97
    image_reference_duplicate: float = 0.97
    image_target_duplicate: float = 0.97
    text_min_target_lead: float = 0.0
    image_max_target_lead: float = 0.0

    @classmethod
    def of(cls, cfg) -> Cuts:
        """From a NegativesConfig: a per-kind cut left unset is ``near_duplicate``."""
        def cut(v):
            return cfg.near_duplicate if v is None else v

        return cls(cut(cfg.text_aligned_max_target_similarity), cut(cfg.text_aligned_max_reference_similarity),
                   cut(cfg.image_aligned_max_reference_similarity), cut(cfg.image_aligned_max_target_similarity),
                   cfg.text_aligned_min_target_lead, cfg.image_aligned_max_target_lead)


def target_lead(neg: np.ndarray, a: Anchors) -> float:
    """cos(neg, tgt) - cos(neg, ref): above 0 when the negative is nearer the target than the reference."""
    return float(neg @ a.tgt - neg @ a.ref)


def text_aligned_margin(neg: np.ndarray, a: Anchors) -> float:
    return float(neg @ a.text - a.ref @ a.text)


def image_aligned_margin(neg: np.ndarray, a: Anchors) -> float:
    return float(a.tgt @ a.text - neg @ a.text)


def check_text_aligned(neg: np.ndarray, a: Anchors, margin: float, cuts: Cuts) -> str | None:
    """None when the negative fits the text better than the reference does, is neither the target
    nor the reference, and leads towards the target."""
    if float(neg @ a.tgt) >= cuts.text_target_duplicate:
        return "is_target"
    if float(neg @ a.ref) >= cuts.text_reference_duplicate:
        return "is_reference"
    if target_lead(neg, a) <= cuts.text_min_target_lead:
        return "too_close_to_reference"
    if text_aligned_margin(neg, a) <= margin:
        return "text_margin_too_small"
    return None


def check_image_aligned(neg: np.ndarray, a: Anchors, margin: float, min_ref_sim: float, cuts: Cuts) -> str | None:
    """None when the negative is like the reference (not it, not the target, not leading towards the
    target) and fits the text worse than the target."""
    sim = float(neg @ a.ref)
    if sim >= cuts.image_reference_duplicate:
        return "is_reference"
    if float(neg @ a.tgt) >= cuts.image_target_duplicate:
        return "is_target"
    if sim < min_ref_sim:
        return "too_far_from_reference"
    if target_lead(neg, a) >= cuts.image_max_target_lead:
        return "too_close_to_target"
    if image_aligned_margin(neg, a) <= margin:
        return "image_margin_too_small"
    return None


def mine_text_aligned(emb: np.ndarray, cands: list[int], a: Anchors, margin: float, cuts: Cuts):
    """(pool index, margin) of the candidate that fits the text best among those that pass, or None."""
    ok = [j for j in cands if check_text_aligned(emb[j], a, margin, cuts) is None]
    if not ok:
        return None
    j = max(ok, key=lambda j: float(emb[j] @ a.text))
    return j, text_aligned_margin(emb[j], a)


def mine_image_aligned(emb: np.ndarray, cands: list[int], a: Anchors, margin: float, min_ref_sim: float,
                       cuts: Cuts):
    """(pool index, margin) of the passing candidate closest to the reference, or None."""
    ok = [j for j in cands if check_image_aligned(emb[j], a, margin, min_ref_sim, cuts) is None]
    if not ok:
        return None
    j = max(ok, key=lambda j: float(emb[j] @ a.ref))
    return j, image_aligned_margin(emb[j], a)


def pick_edit_source(emb: np.ndarray, cands: list[int], a: Anchors, rng: random.Random) -> int | None:
    """Another pool image whose content differs from the reference: less like it than the target is."""
    far = [j for j in cands if float(emb[j] @ a.ref) < a.ref_tgt and float(emb[j] @ a.tgt) < a.ref_tgt]
    return rng.choice(far) if far else None


def pick_side_edit(side_edits: list[str], side_emb: np.ndarray, a: Anchors, max_sim: float,
                   rng: random.Random) -> str | None:
    """A small edit whose text is far from the modification text, so the requested change stays undone."""
    ok = [s for s, e in zip(side_edits, side_emb) if float(e @ a.text) < max_sim]
    return rng.choice(ok) if ok else None


def normalize(x) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
