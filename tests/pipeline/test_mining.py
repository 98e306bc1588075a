"""Pair mining: exact blockwise search, the three strategies, k, the band, mirrored dedup, determinism."""
from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image

from pipeline.config_mining import MiningConfig
from pipeline.mining import (dedup_pairs, mine_one_word_captions, mine_pairs, mine_same_label, mine_similarity_band,
                             topk_search, topk_self)
from pipeline.mining.one_word_captions import words
from pipeline.mining.pairs import MinedPair
from pipeline.sources import FolderSource, ShapesWorldSource, decode_image

SKIMAGE_DIR = Path(skimage.data.__file__).parent


def pixel_embeddings(rows) -> np.ndarray:
    """A cheap stand-in for CLIP in these tests: 12x12 colour thumbnails, centred and normalized."""
    x = np.stack([np.asarray(decode_image(r["image"]).resize((12, 12)), np.float32).ravel() for r in rows])
    x -= x.mean(axis=1, keepdims=True)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Real photos shipped with scikit-image (no download), in label folders, plus a near-duplicate."""
    root = tmp_path_factory.mktemp("photos")
    layout = {"animals": ["chelsea.png", "coffee.png", "astronaut.png"],
              "space": ["rocket.jpg", "hubble_deep_field.jpg", "moon.png"],
              "texture": ["brick.png", "grass.png", "gravel.png", "coins.png"]}
    for label, files in layout.items():
        (root / label).mkdir()
        for f in files:
            shutil.copy(SKIMAGE_DIR / f, root / label / f)
    Image.open(SKIMAGE_DIR / "chelsea.png").save(root / "animals" / "chelsea-copy.jpg", quality=90)
    rows = list(FolderSource(root))
    return rows, pixel_embeddings(rows)


@pytest.fixture(scope="module")
def world():
    rows = list(ShapesWorldSource(image_size=32, families=30, variants_per_family=4, seed=1))
    return rows, pixel_embeddings(rows)


def ids_of(rows):
    return [r["image_id"] for r in rows]


# -- exact search -----------------------------------------------------------------------------
@pytest.mark.parametrize("n,block,gemm", [(301, 64, "numpy"), (300, 1000, "numpy"), (7, 4, "numpy"),
                                          (301, 64, "torch")])
def test_blockwise_search_equals_brute_force(n, block, gemm):
    x = np.random.default_rng(n).standard_normal((n, 32)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    full = x @ x.T
    np.fill_diagonal(full, -np.inf)
    k = 5
    best = np.argsort(-full, axis=1)[:, :k]
    vals, idx = topk_self(x, k, block_size=block, cpu_gemm=gemm)
    assert np.array_equal(idx, best) and np.allclose(vals, np.take_along_axis(full, best, 1), atol=1e-5)
    vals2, idx2 = topk_search(x, x, k, block_size=block, exclude=np.arange(n), cpu_gemm=gemm)
    assert np.array_equal(idx2, best)
    # With a band only similarities inside it count; missing slots are (-inf, -1).
    band = np.where((full >= 0.1) & (full <= 0.3), full, -np.inf)
    vals3, idx3 = topk_self(x, k, block_size=block, band=(0.1, 0.3), cpu_gemm=gemm)
    assert np.allclose(np.nan_to_num(vals3, neginf=-9), np.nan_to_num(-np.sort(-band, axis=1)[:, :k], neginf=-9),
                       atol=1e-5)
    assert ((idx3 == -1) == np.isinf(vals3)).all()
    with pytest.raises(ValueError, match="cpu_gemm='blas'"):
        topk_self(x, k, cpu_gemm="blas")


@pytest.mark.parametrize("n,d,block,band", [(301, 32, 64, None), (7, 32, 4, None), (400, 48, 128, (0.1, 0.3)),
                                          (400, 48, 1000, (-2.0, 0.25))])
def test_bf16_first_pass_gives_the_exact_answer(n, d, block, band):
    x = np.random.default_rng(n + d).standard_normal((n, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    k = 5
    exact_v, exact_i = topk_self(x, k, block_size=block, band=band, precision="float32")
    v, i = topk_self(x, k, block_size=block, band=band, precision="bfloat16")
    assert np.array_equal(i, exact_i)
    assert np.allclose(np.nan_to_num(v, neginf=-9), np.nan_to_num(exact_v, neginf=-9), atol=1e-6)


def test_bf16_rows_it_cannot_prove_are_searched_again(monkeypatch):
    # 60 near-copies of one vector, 1e-2 apart: far inside the bf16 error bound, so the first pass
    # cannot order them and the rows are searched again in float32; the answer stays exact.
    rng = np.random.default_rng(3)
    base = rng.standard_normal(64).astype(np.float32)
    x = base + 1e-2 * rng.standard_normal((60, 64)).astype(np.float32)
    x = np.concatenate([x, rng.standard_normal((200, 64)).astype(np.float32)])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    exact_v, exact_i = topk_self(x, 3, block_size=64, precision="float32")
    import pipeline.mining.search as search

    redone = []
    real = search.topk_search
    monkeypatch.setattr(search, "topk_search", lambda q, *a, **kw: redone.append(len(q)) or real(q, *a, **kw))
    v, i = topk_self(x, 3, block_size=64, precision="bfloat16")
    assert redone and redone[0] >= 60
    assert np.array_equal(i, exact_i) and np.allclose(v, exact_v, atol=1e-6)
    with pytest.raises(ValueError, match="precision='int8'"):
        topk_self(x, 3, precision="int8")


# -- strategies -------------------------------------------------------------------------------
def test_similarity_band_on_photos_respects_band_k_and_near_duplicates(photos):
    rows, emb = photos
    ids = ids_of(rows)
    pairs = mine_similarity_band(ids, emb, k=2, low=-0.2, high=0.9, near_dup=0.95, block_size=4)
    assert pairs and all(-0.2 <= p.similarity <= 0.9 for p in pairs)
    assert max(Counter(p.reference_id for p in pairs).values()) <= 2
    pos = {i: n for n, i in enumerate(ids)}
    assert all(abs(emb[pos[p.reference_id]] @ emb[pos[p.target_id]] - p.similarity) < 1e-5 for p in pairs)
    # The re-encoded JPEG of chelsea is a near-duplicate: never paired with the original.
    dup = {("animals/chelsea-copy.jpg", "animals/chelsea.png"), ("animals/chelsea.png", "animals/chelsea-copy.jpg")}
    assert emb[pos["animals/chelsea.png"]] @ emb[pos["animals/chelsea-copy.jpg"]] > 0.95
    assert not dup & {(p.reference_id, p.target_id) for p in pairs}


def test_same_label_on_photos_and_shapesworld(photos, world):
    for rows, emb in (photos, world):
        labels = {r["image_id"]: r["label"] for r in rows}
        for pick in ("random", "nearest"):
            pairs = mine_same_label(ids_of(rows), list(labels.values()), k=2, seed=0, embeddings=emb,
                                    near_dup=0.95, pick=pick)
            assert pairs and all(labels[p.reference_id] == labels[p.target_id] for p in pairs)
            assert all(p.reference_id != p.target_id and p.similarity <= 0.95 for p in pairs)
            assert max(Counter(p.reference_id for p in pairs).values()) <= 2


def test_one_word_captions_on_shapesworld(world):
    rows, _ = world
    caps = {r["image_id"]: r["caption"] for r in rows}
    pairs = mine_one_word_captions(list(caps), list(caps.values()), k=3, seed=0)
    assert pairs  # a family's colour/shape/size/setting variants differ by one word
    for p in pairs:
        a, b = words(caps[p.reference_id]), words(caps[p.target_id])
        assert len(a) == len(b) and sum(x != y for x, y in zip(a, b)) == 1


def test_one_word_captions_by_hand():
    caps = ["a red circle", "a blue circle", "a red big circle", "A red circle.", "a blue square", None]
    ids = [f"i{n}" for n in range(len(caps))]
    got = {(p.reference_id, p.target_id) for p in mine_one_word_captions(ids, caps, k=5, seed=0)}
    assert got == {("i0", "i1"), ("i1", "i0"), ("i3", "i1"), ("i1", "i3"), ("i1", "i4"), ("i4", "i1")}


# -- union, dedup, determinism ----------------------------------------------------------------
def test_mirrored_pairs_are_deduplicated_unless_allowed(world):
    rows, emb = world
    ids = ids_of(rows)
    cfg = MiningConfig(strategies=["similarity"], k=3, sim_low=0.0, sim_high=0.99, near_dup=0.995)
    pairs = mine_pairs(ids, cfg, seed=0, embeddings=emb)
    keys = {(p.reference_id, p.target_id) for p in pairs}
    assert not any((b, a) in keys for a, b in keys)
    both = mine_pairs(ids, cfg.model_copy(update={"allow_mirrored": True}), seed=0, embeddings=emb)
    assert any((p.target_id, p.reference_id) in {(q.reference_id, q.target_id) for q in both} for p in both)
    assert len(both) > len(pairs)
    # Neither direction is favoured: the kept direction is a seeded draw, not id order.
    assert 0.2 < np.mean([p.reference_id < p.target_id for p in pairs]) < 0.8


def test_dedup_keeps_the_first_strategy():
    a = MinedPair("x", "y", 0.5, "similarity")
    b = MinedPair("x", "y", None, "label")
    assert dedup_pairs([a, b], allow_mirrored=True, seed=0) == [a]


def test_mine_pairs_is_deterministic_sorted_and_unions_strategies(world):
    rows, emb = world
    ids, labels, caps = ids_of(rows), [r["label"] for r in rows], [r["caption"] for r in rows]
    cfg = MiningConfig(strategies=["similarity", "label", "caption"], k=2, sim_low=0.3, sim_high=0.97)
    run = lambda seed: mine_pairs(ids, cfg, seed=seed, embeddings=emb, labels=labels, captions=caps)  # noqa: E731
    first = run(0)
    assert first == run(0)
    assert first == sorted(first, key=lambda p: (p.reference_id, p.target_id))
    assert {p.strategy for p in first} == {"similarity", "label", "caption"}
    assert len({(p.reference_id, p.target_id) for p in first}) == len(first)
    assert run(1) != first  # the random picks follow the seed
