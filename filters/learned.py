"""A learned combination of the embedding-path scores: logistic regression in numpy (L2, Newton steps).

A measured lever, not in the filter chain: fitted on a labelled sample's scores (filters.calibrate),
its probability threshold set for precision on the sample like the per-filter thresholds.
"""
from __future__ import annotations

import numpy as np

from filters.calibrate import RULES, Rule, choose, rejects

FEATURES = {"label": ("roundtrip", "text_image_consistency", "clip_direction", "image_similarity"),
            "neg_text_aligned_label": ("neg_text_aligned_margin", "neg_text_aligned_tgt_sim",
                                       "neg_text_aligned_ref_excess"),
            "neg_image_aligned_label": ("neg_image_aligned_margin", "neg_image_aligned_ref_sim",
                                        "neg_image_aligned_tgt_sim")}
P_BAD = Rule("p_bad", "learned", "max", 1.01)


def _matrix(f: dict[str, np.ndarray], names: tuple[str, ...], idx) -> np.ndarray:
    return np.stack([f[k][idx] for k in names], axis=1)


def fit(x: np.ndarray, y: np.ndarray, l2: float = 1.0, steps: int = 50) -> dict:
    """Weights of p(bad | x): features standardized (NaN -> the mean), bias unpenalized."""
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


def p_bad(model: dict, x: np.ndarray) -> np.ndarray:
    z = np.nan_to_num((x - model["mu"]) / model["sd"])
    return 1 / (1 + np.exp(-(z @ model["w"][:-1] + model["w"][-1])))


def learned_rejects(sample_rows: list[dict], sample_f: dict, rows: list[dict], f: dict,
                    min_precision: float = 0.9) -> dict[str, np.ndarray]:
    """Per labelled part: fit on the sample, pick the probability threshold there, reject on ``rows``."""
    out = {}
    for part in RULES:
        idx = np.array([i for i, r in enumerate(sample_rows) if r.get(part) is not None], int)
        if len(idx) == 0:
            continue
        y = np.array([sample_rows[i][part] for i in idx], float)
        model = fit(_matrix(sample_f, FEATURES[part], idx), y)
        thr = choose({"p_bad": p_bad(model, _matrix(sample_f, FEATURES[part], idx))}, (P_BAD,), y > 0,
                     min_precision)
        out[part] = rejects({"p_bad": p_bad(model, _matrix(f, FEATURES[part], slice(None)))}, (P_BAD,), thr)
    return out
