"""The CLIP embedder: the tiny ShapesWorld CLIP trains, caches and loads through from_pretrained."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pipeline import embedder as emb_mod
from pipeline.config_mining import EmbedderConfig, MiningConfig, TinyClipConfig
from pipeline.embedder import ClipEmbedder, build_tokenizer, ensure_tiny_clip, tiny_clip_config
from pipeline.mining import mine
from pipeline.sources import ShapesWorldSource, decode_image

# Small enough to train in seconds; the default config is the one worth using.
TINY = TinyClipConfig(image_size=32, patch_size=8, hidden_size=32, layers=1, heads=2, projection_dim=16,
                      families=20, steps=15, batch_size=32)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def tiny_dir(cache):
    return ensure_tiny_clip(TINY, cache)


@pytest.fixture(scope="module")
def pool():
    return list(ShapesWorldSource(image_size=32, families=8, variants_per_family=2, seed=0))


def test_tiny_clip_trains_once_and_is_cached(tiny_dir, cache, monkeypatch):
    assert (tiny_dir / "model.safetensors").is_file() and (tiny_dir / "tokenizer.json").is_file()
    assert not list(tiny_dir.glob("*.bin"))
    metrics = __import__("json").loads((tiny_dir / "metrics.json").read_text())
    assert metrics["heldout_images"] > 0 and 0 <= metrics["image_to_caption_r1"] <= 1

    def no_training(*a, **k):
        raise AssertionError("a cached tiny CLIP must load, not retrain")

    monkeypatch.setattr(emb_mod, "train_tiny_clip", no_training)
    assert ensure_tiny_clip(TINY, cache) == tiny_dir
    # Another config is another folder.
    assert emb_mod.tiny_clip_dir(TINY.model_copy(update={"seed": 1}), cache) != tiny_dir


def test_embeddings_are_normalized_float32(tiny_dir, pool, cache):
    e = ClipEmbedder.from_config(EmbedderConfig(tiny=TINY, batch_size=5), cache_dir=cache)
    imgs = e.embed_images([decode_image(r["image"]) for r in pool])
    txts = e.embed_texts([r["caption"] for r in pool])
    assert imgs.shape == txts.shape == (len(pool), 16) and imgs.dtype == np.float32
    assert np.allclose(np.linalg.norm(imgs, axis=1), 1, atol=1e-5)
    assert np.allclose(np.linalg.norm(txts, axis=1), 1, atol=1e-5)
    assert e.embed_images([]).shape == (0, 16)


def test_a_clip_saved_with_save_pretrained_loads_by_path(tmp_path):
    from transformers import CLIPImageProcessorPil, CLIPModel

    tok = build_tokenizer()
    CLIPModel(tiny_clip_config(TINY, tok)).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    e = ClipEmbedder.from_config(EmbedderConfig(checkpoint=str(tmp_path)))
    assert e.embed_images([Image.new("RGB", (50, 40), "red")]).shape == (1, 16)
    assert e.embed_texts(["a red circle", "an unknown word"]).shape == (2, 16)


def test_mine_embeds_the_pool_with_the_cached_clip(tiny_dir, pool, cache):
    rows = {r["image_id"]: r for r in pool}
    pairs = mine(rows, MiningConfig(strategies=["similarity", "label"], k=2, sim_low=-1, sim_high=1),
                 EmbedderConfig(tiny=TINY), seed=0, cache_dir=cache)
    assert pairs and {p.strategy for p in pairs} <= {"similarity", "label"}
    assert all(p.reference_id in rows and p.target_id in rows and p.similarity is not None for p in pairs)


def test_the_pool_store_mines_the_same_pairs_from_memory_mapped_embeddings(tiny_dir, pool, cache, tmp_path):
    """The job's path (embeddings written batch by batch to a .npy, memory-mapped) finds the pairs
    the in-memory path finds."""
    from pipeline.mining import embed_pool, mine_arrays
    from pipeline.pool_store import PoolStore

    rows = {r["image_id"]: r for r in pool}
    cfg, ecfg = MiningConfig(strategies=["similarity"], k=2, sim_low=-1, sim_high=1), EmbedderConfig(tiny=TINY)
    store = PoolStore.ensure(tmp_path / "pool", lambda: iter(sorted(pool, key=lambda r: r["image_id"])))
    emb = store.embeddings(ecfg, cache)
    assert isinstance(emb, np.memmap) and emb.dtype == np.float32
    _, want = embed_pool(rows, ClipEmbedder.from_config(ecfg, cache_dir=cache))
    np.testing.assert_array_equal(np.asarray(emb), want)
    got = mine_arrays(store.ids, store.labels, store.captions, emb, cfg, seed=0)
    assert got == mine(rows, cfg, ecfg, seed=0, cache_dir=cache)
