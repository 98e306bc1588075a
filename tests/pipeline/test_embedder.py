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
TINY = TinyClipConfig(image_size=32, patch_size=8, render_size=32, hidden_size=32, layers=1, heads=2, projection_dim=16,
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


def test_the_tokenizer_knows_every_word_the_annotator_and_captions_write():
    """The vocabulary comes from the world's phrase tables: no annotator text or caption meets [UNK]."""
    import random

    from pipeline.shapesworld import ShapesWorld, annotate

    tok = build_tokenizer()
    world = ShapesWorld(image_size=16, seed=5)
    texts = []
    for i in range(600):
        rng = random.Random(i)
        ref, tgt = world.sample_pair(rng, n_edits=1 + i % 2)
        texts += [annotate(ref, tgt, rng), annotate(tgt, ref, rng), ref.caption()]
    unk = tok.unk_token_id
    unknown = {w for t in texts for w, i in zip(t.lower().replace(",", " , ").split(), tok(t)["input_ids"][1:-1])
               if i == unk}
    assert not unknown
    assert all(unk not in ids for ids in tok(texts)["input_ids"])
    assert tok("Turn the small red square into a triangle, then remove it.")["input_ids"].count(unk) == 0


def test_edit_pairs_come_from_the_training_families_and_read_back_exactly():
    """The edit loss's pairs: two members of one training family, the text turning the reference
    into the target and the reverse text back (checked with the parser)."""
    from pipeline.shapesworld import apply_text

    rows = emb_mod._world_rows(TINY, 12, "tiny-clip-train")
    pairs = emb_mod.edit_pairs(rows, seed=0)
    assert len(pairs) >= 12 * 5 and pairs == emb_mod.edit_pairs(rows, seed=0)
    for a, b, fwd, rev, hard in pairs:
        assert rows[a]["label"] == rows[b]["label"]
        assert apply_text(fwd, rows[a]["scene"]) == rows[b]["scene"]
        assert apply_text(rev, rows[b]["scene"]) == rows[a]["scene"]
        assert apply_text(hard, rows[a]["scene"]) != rows[b]["scene"]


def test_the_training_pairs_are_another_seed_than_the_filter_evaluation_rows():
    """The tiny CLIP trains on its own seed's families; the embedding-path measurement's rows
    (pipeline/shapesworld/sets/filters.make_rows, seeds 0 and 1) share a pair with them only by
    chance (small scenes recur: measured 11 of 2,000 rows with the default 800 families)."""
    from pipeline.shapesworld import Scene
    from pipeline.shapesworld.sets.filters import make_rows

    rows = emb_mod._world_rows(TinyClipConfig(render_size=16), 200, "tiny-clip-train")
    train = {frozenset((rows[a]["scene"], rows[b]["scene"])) for a, b, *_ in emb_mod.edit_pairs(rows, 0)}
    for seed in (0, 1):
        held = [frozenset((Scene.from_json(r["reference_scene"]), Scene.from_json(r["target_scene"])))
                for r in make_rows(300, seed, image_size=16)]
        assert sum(p in train for p in held) <= 3  # 1%


def test_the_edit_losses_prefer_the_change_the_text_names():
    """The direction loss is lower when each text's direction points along its own pair's change
    (and the reverse text along the opposite) than when the texts are swapped."""
    import torch

    g = torch.Generator().manual_seed(0)
    ref = torch.nn.functional.normalize(torch.randn(8, 16, generator=g), dim=-1)
    tgt = torch.nn.functional.normalize(ref + torch.randn(8, 16, generator=g), dim=-1)
    null = torch.nn.functional.normalize(torch.randn(1, 16, generator=g), dim=-1)
    change = tgt - ref
    fwd = torch.nn.functional.normalize(null + change, dim=-1)
    rev = torch.nn.functional.normalize(null - change, dim=-1)
    scale = torch.tensor(10.0)
    right = emb_mod.edit_losses(fwd, rev, null, ref, tgt, scale)
    swapped = emb_mod.edit_losses(rev, fwd, null, ref, tgt, scale)
    assert right[0] < swapped[0] and right[1] < swapped[1]
