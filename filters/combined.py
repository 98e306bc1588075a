"""One learned score over the embedding filters' scores (photos): p(bad text) by logistic regression.

Each embedding filter (round trip, text-image consistency, CLIP direction, image band) ranks bad
texts well on its own but none separates them alone; ``filters calibrate`` fits a logistic
regression over their scores on a labelled sample and stores it here (weights per unit of each
score, the sample's mean of each score, a bias) with the probability at which a row is rejected.
A score a row lacks (its filter disabled) counts as the sample's mean. Rows the embed stage did
not embed, and ShapesWorld rows (scene graphs present: the filters check them exactly), are left
unscored here.
"""
from __future__ import annotations

import math

import numpy as np

from filters.base import EMB_TEXT, SCENE_COLUMNS, Filter, scenes_of

SCORES = ("roundtrip", "text_image_consistency", "clip_direction", "image_similarity")


def fit(x: np.ndarray, y: np.ndarray, l2: float = 1.0, steps: int = 50) -> dict:
    """Logistic regression of p(bad | x) in numpy (L2, Newton steps): features standardized (NaN ->
    the mean), bias unpenalized. Returns {"mu", "sd", "w"} (w: one weight per feature, then the bias)."""
    mu, sd = np.nanmean(x, 0), np.nanstd(x, 0) + 1e-9
    z = np.hstack([np.nan_to_num((x - mu) / sd), np.ones((len(x), 1))])
    w = np.zeros(z.shape[1])
    pen = np.full(z.shape[1], l2)
    pen[-1] = 0.0
    for _ in range(steps):
        p = 1 / (1 + np.exp(-z @ w))
        grad = z.T @ (p - y) + pen * w
        hess = (z * (p * (1 - p))[:, None]).T @ z + np.diag(pen) + 1e-9 * np.eye(len(w))
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return {"mu": mu, "sd": sd, "w": w}


def as_config(model: dict, names: tuple[str, ...]) -> dict:
    """A fitted model as the config's weights (per unit of each score), center and bias."""
    return {"weights": {k: round(float(w / sd), 6) for k, w, sd in zip(names, model["w"][:-1], model["sd"])},
            "center": {k: round(float(mu), 6) for k, mu in zip(names, model["mu"])},
            "bias": round(float(model["w"][-1]), 6)}


def p_bad_array(cfg: dict, f: dict[str, np.ndarray]) -> np.ndarray:
    """p(bad) per row from score arrays (NaN: the row lacks that score, counted at the center)."""
    logit = np.full(len(next(iter(f.values()))), float(cfg["bias"]))
    for k, w in cfg["weights"].items():
        logit += w * np.nan_to_num(f[k] - cfg["center"][k])
    return 1 / (1 + np.exp(-np.clip(logit, -60, 60)))


def p_bad(scores: dict, weights: dict[str, float], center: dict[str, float], bias: float) -> float | None:
    """The model's probability that the text is bad, or None when the row has none of its scores."""
    seen = [k for k in weights if scores.get(k) is not None]
    if not seen:
        return None
    logit = bias + sum(weights[k] * (float(scores[k]) - center.get(k, 0.0)) for k in seen)
    return 1.0 / (1.0 + math.exp(-max(min(logit, 60.0), -60.0)))


class CombinedScoreFilter(Filter):
    """Rejects a photo row whose combined p(bad) is at or above ``max_p_bad``; runs after the scorers."""

    name = "combined_score"
    score_field = "combined_p_bad"
    reason = "combined_score_high"
    optional_reads = Filter.optional_reads + SCENE_COLUMNS + (EMB_TEXT,)

    def score_row(self, row: dict) -> float | None:
        if scenes_of(row) is not None or row.get(EMB_TEXT) is None:
            return None
        c = self.config
        return p_bad(row.get("scores") or {}, c.get("weights") or {}, c.get("center") or {}, c.get("bias", 0.0))

    def keep(self, score: float, row: dict) -> bool:
        return score < self.config.get("max_p_bad", 1.01)
