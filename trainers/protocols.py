"""The benchmarks' official protocols on a score matrix, and their test-server submission files.

Each follows the released evaluation code: CIRR (Cuberick-Orion/CIRR, CLIP4Cir's ``compute_cirr_val_metrics``):
R@1/5/10/50 over the split's whole gallery with the reference removed, Rsubset@1/2/3 over ``img_set``
members minus the reference; FashionIQ (CLIP4Cir's ``compute_fiq_val_metrics``): R@10/R@50 per category
over that category's gallery (reference kept), then the means; CIRCO (miccunifi/CIRCO ``evaluation.py``):
AP@K = sum_{i<=K} P@i * rel_i / min(#gt_img_ids, K), over the whole gallery (reference kept).
Rankings are stable: equal scores keep the gallery's order (the official code's ``argsort`` leaves
ties to the implementation), so a submission and the metrics printed beside it always agree.
"""
from __future__ import annotations

from typing import Sequence

import torch

from trainers.benchmarks import BenchQuery, BenchSplit

TOP = 50  # the submission files list 50 names per query
CIRR_KS, SUBSET_KS, FIQ_KS, CIRCO_KS = (1, 5, 10, 50), (1, 2, 3), (10, 50), (5, 10, 25, 50)
SUBSET_TOP = 3


def _allowed(split: BenchSplit, index: dict[str, int], queries: Sequence[BenchQuery]) -> torch.Tensor:
    """(Q, N) bool: the gallery each query ranks over (its category's; minus the reference on CIRR)."""
    allowed = torch.zeros(len(queries), len(index), dtype=torch.bool)
    cols = {name: torch.tensor([index[n] for n in names], dtype=torch.long) for name, names in split.galleries.items()}
    for i, q in enumerate(queries):
        allowed[i, cols[q.category if q.category in cols else "all"]] = True
        if split.kind == "cirr" and q.reference_id in index:
            allowed[i, index[q.reference_id]] = False
    return allowed


def rank(scores: torch.Tensor, allowed: torch.Tensor, top: int) -> list[list[int]]:
    """Gallery indices by score, best first, ties in gallery order; at most ``top`` allowed ones per row."""
    s = scores.float().masked_fill(~allowed, float("-inf"))
    order = torch.sort(-s, dim=1, stable=True).indices[:, :top]
    n_ok = allowed.sum(dim=1).clamp(max=top)
    return [row[: int(n)].tolist() for row, n in zip(order, n_ok)]


def rankings(split: BenchSplit, names: Sequence[str], scores: torch.Tensor, top: int = TOP) -> dict:
    """Top-``top`` names per query id, and on CIRR the subset ranking (members minus the reference)."""
    index = {n: i for i, n in enumerate(names)}
    qs = split.queries
    out = {"ranked": {}, "subset": {}}
    for q, row in zip(qs, rank(scores, _allowed(split, index, qs), top)):
        out["ranked"][q.qid] = [names[j] for j in row]
    if split.kind == "cirr":
        for i, q in enumerate(qs):
            members = [m for m in dict.fromkeys(q.group_ids or []) if m != q.reference_id and m in index]
            cols = torch.tensor([index[m] for m in members], dtype=torch.long)
            order = torch.sort(-scores[i, cols].float(), stable=True).indices if len(members) else []
            out["subset"][q.qid] = [members[int(j)] for j in order]
    return out


def recall(ranked: dict[str, list[str]], queries: Sequence[BenchQuery], ks: Sequence[int]) -> dict[str, float]:
    """Share of queries (percent) whose first target is among the first K names."""
    hits = {k: [q.target_ids[0] in ranked[q.qid][:k] for q in queries] for k in ks}
    return {k: 100.0 * sum(h) / max(len(h), 1) for k, h in hits.items()}


def average_precision(ranked: dict[str, list[str]], queries: Sequence[BenchQuery], ks: Sequence[int]) -> dict[int, float]:
    """CIRCO mAP@K (percent), every ``target_ids`` entry a positive."""
    out = {}
    for k in ks:
        aps = []
        for q in queries:
            gts = set(q.target_ids)
            hits, total = 0, 0.0
            for i, name in enumerate(ranked[q.qid][:k], start=1):
                if name in gts:
                    hits += 1
                    total += hits / i
            aps.append(total / min(len(gts), k))
        out[k] = 100.0 * sum(aps) / max(len(aps), 1)
    return out


def metrics(split: BenchSplit, ranks: dict) -> dict[str, float]:
    """The benchmark's table from ``rankings`` (a split with targets)."""
    qs = [q for q in split.queries if q.target_ids]
    if not qs:
        raise ValueError(f"{split.name} has no annotated targets: write the submission files instead")
    out: dict[str, float] = {"n_queries": float(len(qs)), "n_gallery": float(len(split.images))}
    if split.kind == "cirr":
        out.update({f"R@{k}": v for k, v in recall(ranks["ranked"], qs, CIRR_KS).items()})
        out.update({f"Rsubset@{k}": v for k, v in recall(ranks["subset"], qs, SUBSET_KS).items()})
        out["Avg"] = (out["R@5"] + out["Rsubset@1"]) / 2  # CIRR's headline: (R@5 + Rsubset@1) / 2
    elif split.kind == "fashioniq":
        for cat in split.galleries:
            got = recall(ranks["ranked"], [q for q in qs if q.category == cat], FIQ_KS)
            out.update({f"{cat}_R@{k}": v for k, v in got.items()})
        for k in FIQ_KS:
            out[f"average_R@{k}"] = sum(out[f"{c}_R@{k}"] for c in split.galleries) / len(split.galleries)
        out["average"] = sum(out[f"average_R@{k}"] for k in FIQ_KS) / len(FIQ_KS)
    else:
        out.update({f"mAP@{k}": v for k, v in average_precision(ranks["ranked"], qs, CIRCO_KS).items()})
    return out


# -- test-server files ---------------------------------------------------------------------------
def submissions(split: BenchSplit, ranks: dict) -> dict[str, dict]:
    """File name -> content: CIRR's ``recall`` and ``recall_subset`` files, CIRCO's ``{id: [50 ids]}``."""
    if split.kind == "cirr":
        return {"cirr_recall.json": {"version": "rc2", "metric": "recall", **ranks["ranked"]},
                "cirr_recall_subset.json": {"version": "rc2", "metric": "recall_subset",
                                            **{k: v[:SUBSET_TOP] for k, v in ranks["subset"].items()}}}
    if split.kind == "circo":
        return {"circo_submission.json": {k: [int(n) if n.isdigit() else n for n in v] for k, v in ranks["ranked"].items()}}
    raise ValueError("FashionIQ has no test server: evaluate on val")


def validate_submission(content: dict, split: BenchSplit, kind: str) -> None:
    """Raise ValueError where ``content`` departs from the official format for ``split``'s queries."""
    body = dict(content)
    if kind in ("recall", "recall_subset"):
        head = {k: body.pop(k, None) for k in ("version", "metric")}
        if head != {"version": "rc2", "metric": kind}:
            raise ValueError(f"CIRR {kind} file: header {head} is not {{'version': 'rc2', 'metric': {kind!r}}}")
    want = {q.qid for q in split.queries}
    if set(body) != want:
        raise ValueError(f"{kind}: {len(want ^ set(body))} query ids differ from the split's")
    n_gallery = len(split.images) - (split.kind == "cirr")
    by_id = {q.qid: q for q in split.queries}
    for qid, names in body.items():
        q = by_id[qid] if kind == "recall_subset" else None
        size = (min(SUBSET_TOP, len(set(q.group_ids or []) - {q.reference_id})) if q else min(TOP, n_gallery))
        if len(names) != size or len(set(names)) != len(names):
            raise ValueError(f"{kind}: query {qid} lists {len(names)} names ({len(set(names))} distinct), want {size}")
        if kind == "circo" and not all(isinstance(n, int) for n in names):
            raise ValueError(f"circo: query {qid}: image ids must be integers")
        if kind != "circo" and not all(isinstance(n, str) for n in names):
            raise ValueError(f"{kind}: query {qid}: image names must be strings")
