"""Pair mining: (reference, target) pairs that are similar but not the same.

Strategies (one file each): an embedding-similarity band, a shared label, captions one word
apart. Their pairs are unioned (the first strategy listed wins a pair), mirrored pairs are
deduplicated unless allowed, and the result is sorted by (reference_id, target_id).
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .one_word_captions import mine_one_word_captions
from .pairs import MinedPair, choose_targets, dedup_pairs
from .same_label import mine_same_label
from .search import resolve_device, topk_search, topk_self
from .similarity_band import mine_similarity_band

__all__ = ["MinedPair", "choose_targets", "dedup_pairs", "embed_pool", "mine", "mine_arrays", "mine_one_word_captions",
           "needs_embeddings",
           "mine_pairs", "mine_same_label", "mine_similarity_band", "topk_search", "topk_self"]


def mine_pairs(ids: Sequence[str], cfg, *, seed: int, embeddings: np.ndarray | None = None,
               labels: Sequence[str | None] | None = None,
               captions: Sequence[str | None] | None = None) -> list[MinedPair]:
    """Run the strategies of a ``MiningConfig`` over a pool given as aligned arrays."""
    if len(set(ids)) != len(ids):
        raise ValueError("mining needs unique image ids")
    device = str(resolve_device(cfg.device))
    found: list[MinedPair] = []
    for strategy in cfg.strategies:
        if strategy == "similarity":
            if embeddings is None:
                raise ValueError("mining strategy 'similarity' needs embeddings")
            found += mine_similarity_band(ids, embeddings, cfg.k, low=cfg.sim_low, high=cfg.sim_high,
                                          near_dup=cfg.near_dup, block_size=cfg.block_size, device=device,
                                          precision=cfg.precision)
        elif strategy == "label":
            found += mine_same_label(ids, labels if labels is not None else [None] * len(ids), cfg.k, seed=seed,
                                     embeddings=embeddings, near_dup=cfg.near_dup, pick=cfg.pick,
                                     block_size=cfg.block_size, device=device, precision=cfg.precision)
        elif strategy == "caption":
            found += mine_one_word_captions(ids, captions if captions is not None else [None] * len(ids), cfg.k,
                                            seed=seed, embeddings=embeddings, near_dup=cfg.near_dup, pick=cfg.pick)
        else:
            raise ValueError(f"mining.strategies: unknown strategy {strategy!r} (similarity, label, caption)")
    return dedup_pairs(found, allow_mirrored=cfg.allow_mirrored, seed=seed)


def embed_pool(rows: dict[str, dict], embedder) -> tuple[list[str], np.ndarray]:
    """Sorted ids and their normalized image embeddings, embedded batch by batch."""
    from pipeline.sources import decode_image

    ids = sorted(rows)
    out = []
    for s in range(0, len(ids), embedder.batch_size):
        out.append(embedder.embed_images([decode_image(rows[i]["image"]) for i in ids[s:s + embedder.batch_size]]))
    dim = out[0].shape[1] if out else 0
    return ids, np.concatenate(out) if out else np.zeros((0, dim), np.float32)


def needs_embeddings(mining_cfg) -> bool:
    """Whether a mining config needs image embeddings (a strategy, the nearest pick, the near-duplicate check)."""
    return "similarity" in mining_cfg.strategies or mining_cfg.pick == "nearest" or mining_cfg.near_dup < 1.0


def mine(rows: dict[str, dict], mining_cfg, embedder_cfg, *, seed: int, cache_dir: str | Path = "cache",
         part_of: Callable[[str], str] | None = None) -> list[MinedPair]:
    """Mine an in-memory pool (id -> row): embed it with the configured CLIP when needed, then
    ``mine_arrays``. The job mines a pool on disk instead (``pipeline.pool_store``)."""
    from pipeline.embedder import ClipEmbedder

    if needs_embeddings(mining_cfg):
        ids, emb = embed_pool(rows, ClipEmbedder.from_config(embedder_cfg, cache_dir=cache_dir))
    else:
        ids, emb = sorted(rows), None
    return mine_arrays(ids, [rows[i].get("label") for i in ids], [rows[i].get("caption") for i in ids], emb,
                       mining_cfg, seed=seed, part_of=part_of and (lambda n: part_of(ids[n])))


def mine_arrays(ids: Sequence[str], labels: Sequence[str | None], captions: Sequence[str | None],
                embeddings: np.ndarray | None, mining_cfg, *, seed: int,
                part_of: Callable[[int], str] | None = None) -> list[MinedPair]:
    """Mine a pool given as aligned columns in sorted id order (embeddings may be memory-mapped).

    ``part_of`` (position -> part, e.g. the image's split): pairs are mined within each part only,
    so that no image is paired across parts; only a part's embeddings are read into memory."""
    parts: dict[str, list[int]] = defaultdict(list)
    for n in range(len(ids)):
        parts[part_of(n) if part_of else ""].append(n)
    found: list[MinedPair] = []
    for part in sorted(parts):
        sub = parts[part]
        found += mine_pairs([ids[n] for n in sub], mining_cfg, seed=seed,
                            embeddings=None if embeddings is None else np.asarray(embeddings[sub], np.float32),
                            labels=[labels[n] for n in sub], captions=[captions[n] for n in sub])
    return sorted(found)
