import io
import re
import sys

import pytest
from PIL import Image

from generators.mtst.config import MTSTConfig, MTSTInferConfig
from generators.mtst.text_stage import MTSTTextStage
from generators.mtst.train import train_mtst

from .conftest import SMALL


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory, seed_set):
    cache = tmp_path_factory.mktemp("mtst")
    cfg = MTSTConfig(model=SMALL.model_copy(update={"image_size": 32}),
                     train={"epochs": 10, "batch_size": 8, "lr": 3e-3, "progress": False, "caption_steps": 0,
                            "cache_dir": str(cache)})
    return train_mtst(cfg, seed_set).model_dir


def _cell(arr):
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return {"bytes": buf.getvalue(), "path": None}


def _batch(seed_set, rows):
    """Rows as (ref, tgt) image indices; ids repeat when an image does."""
    return {
        "reference_id": [f"img{r}" for r, _ in rows],
        "target_id": [f"img{t}" for _, t in rows],
        "reference_image": [_cell(seed_set.images[r]) for r, _ in rows],
        "target_image": [_cell(seed_set.images[t]) for _, t in rows],
    }


def test_writes_forward_and_reverse_texts(trained_dir, seed_set):
    batch = _batch(seed_set, [(0, 1), (2, 3)])
    assert set(batch) == set(MTSTTextStage.reads)  # the stage reads only what it declares
    out = MTSTTextStage(trained_dir)(batch)
    assert len(out["modification_text"]) == len(out["reverse_text"]) == 2
    assert all(t.startswith("make it") for t in out["modification_text"] + out["reverse_text"])


def test_greedy_stage_decodes_like_generate_one_pair_at_a_time(trained_dir, seed_set):
    # The stage decodes through PairDecoder (static KV cache, batches); plain generate per pair agrees.
    stage = MTSTTextStage(trained_dir, MTSTInferConfig(batch_size=4))
    assert stage.pairs.static
    rows = [(i, i + 1) for i in range(0, 12, 2)]
    out = stage(_batch(seed_set, rows))
    m = stage.model
    feats = m.encode_images(m.preprocess([seed_set.images[i] for i in range(12)]))
    for k, (r, t) in enumerate(rows):
        assert m.generate(feats[[r]], feats[[t]], max_new_tokens=32) == [out["modification_text"][k]]
        assert m.generate(feats[[t]], feats[[r]], max_new_tokens=32) == [out["reverse_text"][k]]


def test_each_image_is_encoded_once_per_batch(trained_dir, seed_set):
    stage = MTSTTextStage(trained_dir)
    seen = []
    stage.model.vision_model.register_forward_pre_hook(
        lambda m, args, kwargs: seen.append(kwargs["pixel_values"].shape[0]), with_kwargs=True
    )
    # image 0 is the reference of three pairs and the target of a fourth: 4 distinct images in all
    stage(_batch(seed_set, [(0, 1), (0, 2), (0, 3), (3, 0)]))
    assert sum(seen) == 4


def test_beam_search_backend_option(trained_dir, seed_set):
    stage = MTSTTextStage(trained_dir, MTSTInferConfig(num_beams=3))
    assert not stage.pairs.static and stage.pairs.gen.num_beams == 3
    out = stage(_batch(seed_set, [(0, 1)]))
    assert out["modification_text"][0]


def test_vllm_configured_but_missing_names_the_install_line(trained_dir, monkeypatch):
    from generators.mtst.vllm_backend import vllm_install_line

    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm now raises ImportError
    with pytest.raises(ImportError, match=re.escape(vllm_install_line())):
        MTSTTextStage(trained_dir, MTSTInferConfig(backend="vllm"))


@pytest.mark.slow
def test_vllm_and_transformers_give_the_same_greedy_text(trained_dir, seed_set):
    pytest.importorskip("vllm")
    batch = _batch(seed_set, [(i, i + 1) for i in range(0, 16, 2)])
    hf = MTSTTextStage(trained_dir)(dict(batch))
    stage = MTSTTextStage(trained_dir, MTSTInferConfig(backend="vllm", vllm_gpu_memory_utilization=0.2))
    try:
        vl = stage(dict(batch))
    finally:
        stage.teardown()
    assert vl["modification_text"] == hf["modification_text"]
    assert vl["reverse_text"] == hf["reverse_text"]
