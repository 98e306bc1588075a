import numpy as np
import pytest

from generators.mtst.data import attribute_permutation, permuted_pair, renamed_scene, renamed_text
from pipeline.shapesworld import Scene, apply_text, render
from pipeline.shapesworld.scene import COLORS, SETTINGS, SHAPES
from pipeline.shapesworld.sets.mtst import shapesworld_seed_set


@pytest.fixture(scope="module")
def two_edit_seeds():
    return shapesworld_seed_set(300, seed=5, image_size=32, max_edits=2)


def test_renamed_texts_stay_true_of_the_renamed_scenes(two_edit_seeds):
    d, rng, changed = two_edit_seeds, np.random.default_rng(0), 0
    for r, t, fwd, rev in d.pairs:
        words = attribute_permutation(rng)
        ref, tgt = renamed_scene(d.scenes[r], words), renamed_scene(d.scenes[t], words)
        # the strict parser reads every renamed text (articles mended: "an autumn" -> "a night")
        assert apply_text(renamed_text(fwd, words), ref) == tgt, (fwd, renamed_text(fwd, words))
        assert apply_text(renamed_text(rev, words), tgt) == ref, (rev, renamed_text(rev, words))
        changed += renamed_text(fwd, words) != fwd
    assert changed > 250  # most draws rename some word of the text


def test_a_permutation_renames_each_kind_among_itself():
    for seed in range(20):
        words = attribute_permutation(np.random.default_rng(seed))
        for vocab in (COLORS, SHAPES, SETTINGS):
            assert sorted(words[w] for w in vocab) == sorted(vocab)
    assert renamed_text("Switch to an autumn background. Then paint the red star blue", {
        "autumn": "night", "red": "red", "star": "circle", "blue": "yellow"}) == \
        "Switch to a night background. Then paint the red circle yellow"


def test_permuted_pair_renders_the_renamed_scenes(two_edit_seeds):
    d = two_edit_seeds
    r, t, fwd, rev = d.pairs[0]
    a, b, (fwd2, rev2) = permuted_pair((d.scenes[r], d.scenes[t]), (fwd, rev), np.random.default_rng(3), 32)
    words = attribute_permutation(np.random.default_rng(3))  # the same draw
    for img, js in ((a, d.scenes[r]), (b, d.scenes[t])):
        assert img.dtype == np.uint8 and img.shape == d.images[r].shape
        assert np.array_equal(img, np.asarray(render(renamed_scene(js, words), 32).convert("RGB")))
    assert (fwd2, rev2) == (renamed_text(fwd, words), renamed_text(rev, words))
    # renaming nothing gives the seed set's own images back
    same = {w: w for w in (*COLORS, *SHAPES, *SETTINGS)}
    assert np.array_equal(np.asarray(render(renamed_scene(d.scenes[r], same), 32).convert("RGB")), d.images[r])
    assert Scene.from_json(d.scenes[r]) == renamed_scene(d.scenes[r], same)
