"""Image editors: the tiny InstructPix2Pix saved and loaded through from_pretrained, and ShapesWorld's exact one."""
import io

import numpy as np
import pytest
from PIL import Image

from generators.negatives.editors import EditRequest, ShapesWorldEditor, png_struct
from generators.negatives.stage import make_editor
from pipeline.shapesworld import Obj, Scene, apply_text, render


@pytest.fixture(scope="module")
def tiny_ip2p(tmp_path_factory):
    import torch

    from generators.negatives.ip2p import random_pipeline

    # Tiny convs on a shared 2-core machine: one thread avoids OpenMP spinning (40x slower seen).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("ip2p")
    random_pipeline("tiny").save_pretrained(path)
    yield path
    torch.set_num_threads(threads)


def pixels(struct) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(struct["bytes"])).convert("RGB"), dtype=np.int16)


def test_tiny_instruct_pix2pix_loads_from_pretrained_and_edits_a_batch_deterministically(tiny_ip2p):
    assert not list(tiny_ip2p.rglob("*.bin")), "safetensors only"
    editor = make_editor("instruct_pix2pix", {"model": str(tiny_ip2p), "device": "cpu", "resolution": 32,
                                              "steps": 2, "batch_size": 2})
    assert editor.editor_id == str(tiny_ip2p)
    red = png_struct(Image.new("RGB", (24, 20), (200, 20, 20)))
    reqs = [EditRequest("w1 w2", red, seed=7), EditRequest("w3", red, seed=8), EditRequest("no image", None),
            EditRequest("w1 w2", red, seed=7)]
    out = editor.edit_batch(reqs)
    assert out[2] is None
    assert Image.open(io.BytesIO(out[0].image["bytes"])).size == (24, 20)  # back at the source's size
    # The same (image, instruction, seed) gives the same edit, whichever batch it rides in.
    assert np.abs(pixels(out[0].image) - pixels(out[3].image)).max() <= 2
    again = editor.edit_batch(reqs[:1])
    assert np.abs(pixels(again[0].image) - pixels(out[0].image)).max() <= 2
    assert np.abs(pixels(out[0].image) - pixels(out[1].image)).max() > 0  # another seed, another edit


def test_shapesworld_editor_renders_the_scene_the_instruction_describes():
    scene = Scene("plain", (Obj("circle", "red", "small", 0, 0),))
    src = png_struct(render(scene, 48))
    (ok, bad) = ShapesWorldEditor().edit_batch([EditRequest("make the red circle blue", src, scene.to_json()),
                                                EditRequest("remove the green star", src, scene.to_json())])
    assert bad is None
    want = apply_text("make the red circle blue", scene)
    assert Scene.from_json(ok.scene) == want
    assert ok.image["bytes"] == png_struct(render(want, 48))["bytes"]


def test_unknown_editor_kind_is_named():
    with pytest.raises(ValueError, match="negatives.editor='paint'"):
        make_editor("paint")
    assert make_editor("none") is None
