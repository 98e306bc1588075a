"""Evaluate a retrieval model on a benchmark: standard, subset, multi-target and FBCIR hard-case metrics.

A ``Benchmark`` is a gallery of images by id plus composed queries that point into it; one can be
built from a cirforge dataset split (``benchmark_from_dataset``) or from row dicts.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from trainers import metrics as M
from trainers.config import EvalConfig
from trainers.factory import image_size, load_model, text_length
from trainers.data import NEGATIVE_COLUMNS, ParquetTriplets
from trainers.encode import device_of as _device, encode_images, encode_queries, score_chunks


@dataclass
class Query:
    """One composed query; ``target_ids`` may hold several ground truths (CIRCO)."""

    reference_id: str
    text: str
    target_ids: list[str]
    group_ids: list[str] | None = None
    negatives: list[Any] = field(default_factory=list)  # FBCIR (text-aligned, image-aligned); None when absent


@dataclass
class Benchmark:
    """Gallery images (HF Image structs or PIL) by id, and the queries."""

    name: str
    images: dict[str, Any]
    queries: list[Query]
    root: Path | None = None


def benchmark_from_rows(rows: Sequence[dict], name: str = "rows", root: Path | None = None) -> Benchmark:
    """Gallery = every reference and target image; a query's group = its reference's targets (CIRR-like)."""
    images: dict[str, Any] = {}
    targets_of: dict[str, list[str]] = defaultdict(list)
    for r in rows:
        images.setdefault(r["reference_id"], r["reference_image"])
        images.setdefault(r["target_id"], r["target_image"])
        targets_of[r["reference_id"]].append(r["target_id"])
    queries = [
        Query(r["reference_id"], r["modification_text"], [r["target_id"]],
              group_ids=sorted(set(targets_of[r["reference_id"]]) | {r["reference_id"]}),
              negatives=[r.get(c) for c in NEGATIVE_COLUMNS])
        for r in rows
    ]
    return Benchmark(name, images, queries, root)


def benchmark_from_dataset(dataset_dir: str | Path, split: str = "test"):
    """A benchmark from a cirforge dataset split (test splits are small enough to hold); from a CIRR,
    FashionIQ or CIRCO folder, that split in the official layout (scored by the official protocol)."""
    from trainers.benchmarks import detect, read

    if detect(dataset_dir) is not None:
        return read(dataset_dir, split)
    source = ParquetTriplets(dataset_dir, split)
    return benchmark_from_rows(list(source.rows()), name=f"{Path(dataset_dir).name}/{split}", root=source.root)


def _slice(d: dict[str, torch.Tensor], idx) -> dict[str, torch.Tensor]:
    return {k: v[idx] for k, v in d.items()}


@torch.no_grad()
def evaluate(model, benchmark: Benchmark | str | Path, cfg: EvalConfig = EvalConfig(), tokenizer=None) -> dict[str, float]:
    """All metrics that apply to ``benchmark``: R@K, Rs@K (groups), FashionIQ R_avg, mAP@K, hard-case R@1.

    ``model`` may be a saved model folder (its tokenizer is the default); ``benchmark`` a dataset folder
    (its ``cfg.split`` split)."""
    if isinstance(model, (str, Path)):
        model = load_model(model)
    if isinstance(benchmark, (str, Path)):
        benchmark = benchmark_from_dataset(benchmark, cfg.split)
    if not isinstance(benchmark, Benchmark):  # an official split: its own protocol
        from trainers.evaluate_real import evaluate_split

        return evaluate_split(model, benchmark, cfg, tokenizer=tokenizer)["metrics"]
    tokenizer = tokenizer if tokenizer is not None else model.tokenizer
    was_training = model.training
    model.eval()
    size = image_size(model)
    ids = list(benchmark.images)
    index = {g: i for i, g in enumerate(ids)}
    gallery = encode_images(model, [benchmark.images[g] for g in ids], size, cfg.batch_size, root=benchmark.root)
    qs = benchmark.queries
    query = encode_queries(model, [benchmark.images[q.reference_id] for q in qs], [q.text for q in qs], tokenizer,
                           size, cfg.batch_size, text_length(model, cfg.max_text_len), root=benchmark.root)
    scores = score_chunks(model, query, gallery, cfg.batch_size)
    target_idx = torch.tensor([index[q.target_ids[0]] for q in qs])
    ref_idx = torch.tensor([index.get(q.reference_id, -1) for q in qs])
    exclude = ref_idx if cfg.exclude_reference else None
    out: dict[str, float] = {"n_queries": float(len(qs)), "n_gallery": float(len(ids))}
    out.update(M.recall_at_k(scores, target_idx, [k for k in cfg.ks if k <= len(ids)], exclude))
    if len(ids) >= 50:
        out["fiq_R_avg"] = M.fashioniq_recall(scores, target_idx)["R_avg"]
    positives = torch.zeros_like(scores, dtype=torch.bool)
    for i, q in enumerate(qs):
        positives[i, [index[t] for t in q.target_ids]] = True
    out.update(M.map_at_k(scores, positives, cfg.map_ks, exclude))
    if any(q.group_ids for q in qs):
        groups = torch.zeros_like(positives)
        for i, q in enumerate(qs):
            groups[i, [index[g] for g in (q.group_ids or ids)]] = True
        out.update(M.recall_subset_at_k(scores, target_idx, groups, cfg.subset_ks, exclude))
    out.update(_hard_case(model, benchmark, query, gallery, target_idx, ref_idx, size, cfg))
    model.train(was_training)
    return out


def _hard_case(model, bench, query, gallery, target_idx, ref_idx, size, cfg) -> dict[str, float]:
    """Each query against [target, text-aligned neg, image-aligned neg, reference] only."""
    rows = [i for i, q in enumerate(bench.queries) if any(n is not None for n in q.negatives)]
    if not rows:
        return {}
    dev, n_neg = _device(model), len(NEGATIVE_COLUMNS)
    negs = [bench.queries[i].negatives[k] for i in rows for k in range(n_neg)]
    have = torch.tensor([n is not None for n in negs])
    enc = encode_images(model, [n for n in negs if n is not None], size, cfg.batch_size, root=bench.root)
    r = torch.tensor(rows)
    tgt, ref = target_idx[r].to(dev), ref_idx[r].clamp_min(0).to(dev)
    valid = torch.ones(len(rows), 2 + n_neg, dtype=torch.bool)
    valid[:, 1 : 1 + n_neg] = have.view(len(rows), n_neg)
    valid[:, -1] = ref_idx[r] >= 0
    own = {}
    for k, g in gallery.items():
        neg = g.new_zeros(len(negs), *g.shape[1:])
        neg[have.to(dev)] = enc[k]
        own[k] = torch.cat([g[tgt].unsqueeze(1), neg.view(len(rows), n_neg, *g.shape[1:]), g[ref].unsqueeze(1)], 1)
    scores = model.score_own(_slice(query, r.to(dev)), own).float().cpu()
    out = M.hard_case_recall_at_1(scores, valid)
    out["n_hard"] = float(len(rows))
    return out
