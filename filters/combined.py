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


class CombinedScoreFilter(Filter):
    """Rejects a photo row whose combined p(bad) is at or above ``max_p_bad``; runs after the scorers."""

    name = "combined_score"
    score_field = "combined_p_bad"
    reason = "combined_score_high"
    optional_reads = Filter.optional_reads + SCENE_COLUMNS + (EMB_TEXT,)

    def score_rows(self, rows: list[dict]) -> list[float | None]:
        """The batch's p(bad) in one go (the calibration's own formula); None for a row it does not judge
        or that has none of the weighted scores."""
        c = {"weights": self.config.get("weights") or {}, "center": self.config.get("center") or {},
             "bias": self.config.get("bias", 0.0)}
        if not rows or not c["weights"]:
            return [None] * len(rows)
        scores = [row.get("scores") or {} for row in rows]
        f = {k: np.array([np.nan if s.get(k) is None else float(s[k]) for s in scores]) for k in c["weights"]}
        p = p_bad_array(c, f)
        return [None if scenes_of(row) is not None or row.get(EMB_TEXT) is None
                or all(np.isnan(f[k][i]) for k in f) else float(p[i]) for i, row in enumerate(rows)]

    def keep(self, score: float, row: dict) -> bool:
        return score < self.config.get("max_p_bad", 1.01)
