"""The FBCIR negatives stage: exact ShapesWorld negatives, mined before edited, photos by CLIP margins."""
import io
import random

import numpy as np
import pytest
from PIL import Image

from generators.negatives.editors import EditResult
from generators.negatives.stage import NegativesStage, negative_stage_specs, write_pool
from generators.negatives.config import NegativesConfig
from pipeline.seeding import derive_seed
from pipeline.shapesworld import Scene, ShapesWorld, annotate, apply_text, diff_all, render, scene_id
from pipeline.stage import REJECT_COLUMN

SIZE = 32


def png(image: Image.Image) -> dict:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return {"bytes": buf.getvalue(), "path": None}


@pytest.fixture(scope="module")
def world_pool(tmp_path_factory):
    """A ShapesWorld pool file and triplets between members of its families (annotator texts)."""
    world = ShapesWorld(image_size=SIZE, families=40, seed=3)
    members = list(world.pool())
    pool = [{"image_id": f"sw-{scene_id(r['scene'])}", "image": png(render(r["scene"], SIZE)),
             "label": r["label"], "scene": r["scene"]} for r in members]
    path = write_pool(tmp_path_factory.mktemp("pool") / "pool.parquet", pool)
    by_family: dict[str, list] = {}
    for r in pool:
        by_family.setdefault(r["label"], []).append(r)
    rows = []
    for fam in by_family.values():
        for a, b in zip(fam, fam[1:]):
            rng = random.Random(derive_seed(0, a["image_id"], b["image_id"]))
            text = annotate(a["scene"], b["scene"], rng)
            if text:
                rows.append(triplet(a, b, text))
    return path, pool, rows


def triplet(a: dict, b: dict, text: str) -> dict:
    return {"triplet_id": f"{a['image_id']}>{b['image_id']}", "reference_id": a["image_id"], "target_id": b["image_id"],
            "reference_image": a["image"], "target_image": b["image"], "modification_text": text,
            "reference_scene": a["scene"].to_json(), "target_scene": b["scene"].to_json(), "scores": {}}


def run(stage, rows):
    return stage({k: [r[k] for r in rows] for k in rows[0]})


def edit_keys(ref: Scene, edits) -> set:
    """What each edit does, named by the object's cell in ``ref`` (written apart from the stage's code)."""
    keys, now = set(), {}
    for e in edits:
        cell = now.get(e.cell, e.cell)
        if e.kind == "move":
            now[e.to] = cell
        keys.add((e.kind, cell, e.value, e.to, e.obj))
    return keys


def test_every_kept_shapesworld_negative_passes_the_exact_scene_graph_check(world_pool):
    path, _, rows = world_pool
    out = run(NegativesStage(path, seed=1), rows)
    kept = [i for i in range(len(rows)) if not out[REJECT_COLUMN][i]]
    assert len(rows) >= 60 and len(kept) >= 0.9 * len(rows)
    for i in kept:
        ref, tgt = Scene.from_json(rows[i]["reference_scene"]), Scene.from_json(rows[i]["target_scene"])
        text = rows[i]["modification_text"]
        # text-aligned: the text applied to its source scene is the negative, and it is not the target
        src, neg = (Scene.from_json(out[c][i]) for c in ("neg_text_aligned_source_scene", "neg_text_aligned_scene"))
        assert src != ref and apply_text(text, src) == neg and neg not in (tgt, ref)
        assert out["neg_text_aligned_image"][i]["bytes"] == png(render(neg, SIZE))["bytes"]
        # image-aligned: near the reference, not it, not the target, the requested change not in it
        neg = Scene.from_json(out["neg_image_aligned_scene"][i])
        assert neg not in (ref, tgt)
        asked = set().union(*(edit_keys(ref, d) for d in diff_all(ref, tgt)))
        options = diff_all(ref, neg, max_edits=2)
        assert options and not any(edit_keys(ref, d) & asked for d in options)
        assert out["neg_image_aligned_image"][i]["bytes"] == png(render(neg, SIZE))["bytes"]
        for kind in ("text_aligned", "image_aligned"):
            assert out[f"neg_{kind}_source"][i] in ("mined", "edited")
            assert (out[f"neg_{kind}_instruction"][i] is not None) == (out[f"neg_{kind}_source"][i] == "edited")
            assert out["scores"][i][f"neg_{kind}_margin"] == 1.0


def test_mined_first_then_edited_and_deterministic(world_pool):
    path, _, rows = world_pool
    a, b = run(NegativesStage(path, seed=1), rows), run(NegativesStage(path, seed=1), rows)
    for c in ("neg_text_aligned_image", "neg_image_aligned_image", "neg_image_aligned_instruction", REJECT_COLUMN):
        assert a[c] == b[c]
    sources = a["neg_text_aligned_source"] + a["neg_image_aligned_source"]
    assert "mined" in sources and "edited" in sources
    edited = [i for i in range(len(rows)) if "edited" in (a["neg_text_aligned_source"][i], a["neg_image_aligned_source"][i])]
    assert all(a["editor"][i] == "shapesworld-renderer" for i in edited)


def test_edits_when_the_pool_has_nothing_and_rejects_without_an_editor(tmp_path, world_pool):
    _, pool, rows = world_pool
    row = rows[0]
    tiny = [p for p in pool if p["image_id"] in (row["reference_id"], row["target_id"])] + \
           [p for p in pool if p["label"] != pool[0]["label"]][:3]
    path = write_pool(tmp_path / "tiny.parquet", tiny)
    out = run(NegativesStage(path, seed=0, config={"prefer_mined": False}), [row])
    assert out["neg_image_aligned_source"] == ["edited"] and out["neg_image_aligned_instruction"][0]
    none = run(NegativesStage(path, seed=0, config={"editor": "none", "prefer_mined": False}), [row])
    assert "negatives:image_aligned_not_found" in none[REJECT_COLUMN][0]
    assert none["neg_image_aligned_image"] == [None]


def test_rows_rejected_upstream_pass_through(world_pool):
    path, _, rows = world_pool
    batch = {k: [r[k] for r in rows[:2]] for k in rows[0]}
    batch[REJECT_COLUMN] = [["annotator:more_than_2_edits"], []]
    out = NegativesStage(path)(batch)
    assert out[REJECT_COLUMN][0] == ["annotator:more_than_2_edits"] and out["neg_text_aligned_image"][0] is None
    assert out["neg_text_aligned_image"][1] is not None


# -- photos: CLIP margins, with a fake embedder whose vectors are written into the pixels ----------
def vec_image(v) -> dict:
    v = np.asarray(v, float) / np.linalg.norm(v)
    return png(Image.new("RGB", (8, 8), tuple(int(round(127.5 + 127 * x)) for x in v)))


class PixelEmbedder:
    """Image embedding = the pixel color read back as a vector; text embeddings from a table."""

    def __init__(self, texts: dict):
        self.texts = texts

    def embed_images(self, images):
        v = np.asarray([np.asarray(im, float).reshape(-1, 3).mean(0) for im in images]) - 127.5
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    def embed_texts(self, texts):
        return np.asarray([self.texts.get(t, [0.0, 0.0, 1.0]) for t in texts], float)


R, T, TEXT = [1, 0, 0], [0.6, 0.8, 0], [0, 1, 0]
TEXT_NEG, IMAGE_NEG, FAR = [0, 0.8, 0.6], [0.8, 0, 0.6], [0, 0, 1]


class ColorEditor:
    editor_id = "fake-ip2p"

    def edit_batch(self, requests):
        return [EditResult(vec_image(TEXT_NEG if q.instruction == "add green" else IMAGE_NEG)) for q in requests]


def photo_row():
    return {"triplet_id": "p0", "reference_id": "r", "target_id": "t", "reference_image": vec_image(R),
            "target_image": vec_image(T), "modification_text": "add green", "reference_scene": None,
            "target_scene": None, "scores": {}}


@pytest.mark.parametrize("with_candidates", [True, False])
def test_photo_negatives_mined_or_edited_and_checked_by_margins(tmp_path, with_candidates):
    pool = [{"image_id": "r", "image": vec_image(R)}, {"image_id": "t", "image": vec_image(T)},
            {"image_id": "far", "image": vec_image(FAR)}]
    if with_candidates:
        pool += [{"image_id": "c", "image": vec_image(TEXT_NEG)}, {"image_id": "m", "image": vec_image(IMAGE_NEG)}]
    path = write_pool(tmp_path / "pool.parquet", pool)
    stage = NegativesStage(path, config={"editor": "none"}, embedder=PixelEmbedder({"add green": TEXT}),
                           editor=ColorEditor())
    out = run(stage, [photo_row()])
    assert out[REJECT_COLUMN] == [[]]
    want = "mined" if with_candidates else "edited"
    assert out["neg_text_aligned_source"] == [want] and out["neg_image_aligned_source"] == [want]
    s = out["scores"][0]
    assert s["neg_text_aligned_margin"] == pytest.approx(0.8, abs=0.02)
    assert s["neg_image_aligned_margin"] == pytest.approx(0.8, abs=0.02)
    if not with_candidates:
        assert out["neg_text_aligned_instruction"] == ["add green"] and out["editor"] == ["fake-ip2p"]


def test_photo_edit_that_fails_the_margin_is_rejected(tmp_path):
    class WrongEditor(ColorEditor):
        def edit_batch(self, requests):
            return [EditResult(vec_image(R)) for _ in requests]  # gives back the reference

    path = write_pool(tmp_path / "pool.parquet", [{"image_id": "far", "image": vec_image(FAR)}])
    stage = NegativesStage(path, embedder=PixelEmbedder({"add green": TEXT}), editor=WrongEditor())
    out = run(stage, [photo_row()])
    assert sorted(out[REJECT_COLUMN][0]) == ["negatives:image_aligned_is_reference",
                                             "negatives:text_aligned_is_reference"]


def test_stage_specs_follow_the_config(tmp_path):
    assert negative_stage_specs(NegativesConfig(enabled=False), tmp_path / "p.parquet") == []
    (spec,) = negative_stage_specs(NegativesConfig(), tmp_path / "p.parquet", seed=5)
    assert spec.cls.num_gpus == 0 and spec.kwargs["seed"] == 5
    (gpu,) = negative_stage_specs(NegativesConfig(editor="instruct_pix2pix",
                                                  instruct_pix2pix={"device": "cuda"}), tmp_path / "p.parquet")
    assert gpu.cls.num_gpus == 1
