"""ShapesWorld: scenes, edits, rendering, the annotator/parser round trip and the image pool."""
from __future__ import annotations

import io
import random
from collections import Counter, defaultdict

import numpy as np
import pytest

from pipeline.config import ShapesWorldConfig
from pipeline.shapesworld import (COLORS, EDIT_KINDS, POSITIONS, SETTINGS, SHAPES, SIZES, Edit, Obj, ParseError,
                                  Scene, ShapesWorld, annotate, apply_edit, apply_edits, apply_text, diff, edit,
                                  parse, random_edit, render, scene_id)
from pipeline.shapesworld.render import PALETTE

RED_CIRCLE = Obj("circle", "red", "small", 0, 0)
BLUE_STAR = Obj("star", "blue", "large", 1, 1)
SCENE = Scene("snow", (BLUE_STAR, RED_CIRCLE))


def png_bytes(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def annotated_pairs(seeds=range(30), per_seed=110):
    """(ref, tgt, n_edits, text) over many seeds, half 1-edit and half 2-edit pairs."""
    for seed in seeds:
        world = ShapesWorld(seed=seed, max_objects=4 if seed % 3 else 9)
        rng = random.Random(seed)
        for i in range(per_seed):
            n = 1 + i % 2
            ref, tgt = world.sample_pair(rng, n)
            yield ref, tgt, n, annotate(ref, tgt, rng)


@pytest.fixture(scope="module")
def pairs():
    return list(annotated_pairs())


# --- scenes ----------------------------------------------------------------------------------

def test_vocabulary_is_big_enough():
    assert set(SETTINGS) >= {"plain", "night", "snow", "autumn"}
    assert len(SHAPES) >= 4 and len(COLORS) >= 5 and SIZES == ("small", "large")
    assert len(POSITIONS) == 9 and POSITIONS[0] == "top left" and POSITIONS[4] == "center"


def test_objects_are_kept_in_canonical_order_so_equal_scenes_hash_equal():
    a = Scene("snow", (BLUE_STAR, RED_CIRCLE))
    b = Scene("snow", (RED_CIRCLE, BLUE_STAR))
    assert a == b and hash(a) == hash(b) and scene_id(a) == scene_id(b)
    assert a.objects[0] == RED_CIRCLE  # (0, 0) comes first


def test_scene_rules_reject_ambiguous_scenes():
    with pytest.raises(ValueError, match="unique"):
        Scene("plain", (RED_CIRCLE, Obj("circle", "red", "large", 2, 2)))
    with pytest.raises(ValueError, match="same cell"):
        Scene("plain", (RED_CIRCLE, Obj("star", "blue", "large", 0, 0)))
    with pytest.raises(ValueError, match="setting"):
        Scene("desert", (RED_CIRCLE,))


def test_json_round_trip_is_compact_and_sorted():
    text = SCENE.to_json()
    assert Scene.from_json(text) == SCENE
    assert " " not in text.replace("top left", "") and text.startswith('{"objects":[{"col":0,"color":"red"')
    with pytest.raises(ValueError):
        Scene.from_json('{"setting": "snow"}')


def test_caption_reads_like_a_description():
    assert SCENE.caption() == "a snow scene with a small red circle at the top left and a large blue star in the center"


def test_scene_id_is_a_stable_short_hash():
    assert scene_id(SCENE) == scene_id(Scene.from_json(SCENE.to_json()))
    assert len(scene_id(SCENE)) == 12 and scene_id(SCENE) != scene_id(Scene("night", SCENE.objects))


# --- edits -----------------------------------------------------------------------------------

def test_apply_edits_and_clear_errors():
    s = apply_edits(SCENE, [Edit("color", cell=(0, 0), value="green"), Edit("move", cell=(0, 0), to=(2, 2))])
    assert s.at((2, 2)) == Obj("circle", "green", "small", 2, 2)
    with pytest.raises(ValueError, match="already red"):
        apply_edit(SCENE, Edit("color", cell=(0, 0), value="red"))
    with pytest.raises(ValueError, match="no object"):
        apply_edit(SCENE, Edit("remove", cell=(2, 2)))
    with pytest.raises(ValueError, match="unique"):  # a second blue star would make "the blue star" ambiguous
        apply_edit(SCENE, Edit("add", obj=Obj("star", "blue", "small", 2, 2)))
    with pytest.raises(ValueError, match="taken"):
        apply_edit(SCENE, Edit("move", cell=(0, 0), to=(1, 1)))


def test_diff_gives_the_minimal_edit_list_and_applies_back():
    world = ShapesWorld(seed=3)
    rng = random.Random(3)
    for i in range(300):
        n = 1 + i % 2
        ref, tgt = world.sample_pair(rng, n)
        edits = diff(ref, tgt)
        assert len(edits) == n and apply_edits(ref, edits) == tgt
    assert diff(SCENE, SCENE) == []


def test_diff_is_none_beyond_two_edits():
    far = apply_edits(SCENE, [Edit("setting", value="night"), Edit("size", cell=(0, 0), value="large"),
                              Edit("color", cell=(1, 1), value="red")])
    assert diff(SCENE, far) is None
    assert len(diff(SCENE, far, max_edits=3)) == 3


def test_diff_finds_an_order_that_keeps_the_scene_valid():
    # The circle must leave the center before the star can take it.
    a = Scene("plain", (Obj("circle", "red", "small", 1, 1), Obj("star", "blue", "small", 0, 0)))
    b = Scene("plain", (Obj("circle", "red", "small", 2, 2), Obj("star", "blue", "small", 1, 1)))
    assert [e.kind for e in diff(a, b)] == ["move", "move"] and diff(a, b)[0].cell == (1, 1)
    # Swapping two colors needs a third color in between: 3 edits, not 2.
    c = Scene("plain", (Obj("circle", "blue", "small", 1, 1), Obj("circle", "red", "small", 0, 0)))
    assert diff(Scene("plain", (Obj("circle", "red", "small", 1, 1), Obj("circle", "blue", "small", 0, 0))), c) is None


def test_random_edit_always_applies_and_changes_the_scene():
    world = ShapesWorld(seed=5)
    rng = random.Random(5)
    kinds = Counter()
    for _ in range(500):
        s = world.sample_scene(rng)
        e = random_edit(s, rng, max_objects=4)
        t = apply_edit(s, e)
        assert t != s and len(t.objects) <= 4 and diff(s, t) is not None
        kinds[e.kind] += 1
    assert set(kinds) == set(EDIT_KINDS)


# --- annotator and parser --------------------------------------------------------------------

def test_parser_reproduces_the_target_for_every_annotator_text(pairs):
    assert len(pairs) >= 3000
    wrong = [(ref.caption(), text, tgt.caption()) for ref, tgt, _, text in pairs if apply_text(text, ref) != tgt]
    assert wrong == []


def test_annotator_writes_at_least_three_phrasings_per_edit_kind(pairs):
    structure = defaultdict(set)
    filler = ({"the", "a", "an", "it", "object", "at", "in", "on", "corner", "middle", "."}
              | {w for vocab in (COLORS, SHAPES, SIZES, SETTINGS, POSITIONS) for v in vocab for w in v.split()})
    for ref, tgt, n, text in pairs:
        if n == 1:
            kind = diff(ref, tgt)[0].kind
            structure[kind].add(tuple(w for w in text.lower().rstrip(".").split() if w not in filler))
    assert set(structure) == set(EDIT_KINDS)
    for kind, phrasings in structure.items():
        assert len(phrasings) >= 3, (kind, phrasings)


def test_two_edits_are_joined_in_varied_ways(pairs):
    joins = Counter()
    for _, _, n, text in pairs:
        if n == 2:
            for marker in ("; also ", ", then ", " and then ", ". also, ", ". then ", ", and "):
                if marker in text.lower():
                    joins[marker] += 1
    assert len(joins) >= 4


def test_texts_look_like_this():
    rng = random.Random(0)
    target = apply_edit(SCENE, Edit("color", cell=(0, 0), value="blue"))
    texts = {annotate(SCENE, target, rng).lower().rstrip(".") for _ in range(300)}
    assert "make the red circle blue" in texts and "change the color of the red circle to blue" in texts
    assert annotate(SCENE, SCENE, rng) is None


def test_same_seed_same_texts():
    first = [text for *_, text in annotated_pairs(seeds=[7], per_seed=50)]
    assert first == [text for *_, text in annotated_pairs(seeds=[7], per_seed=50)]


@pytest.mark.parametrize("text", [
    "make the red circle blue",
    "Change the color of the red circle to blue.",
    "the small red circle should be blue",
    "paint the object in the top-left corner blue",
    "turn the circle blue",
])
def test_parser_reads_phrasings_of_one_edit(text):
    assert parse(text, SCENE) == [Edit("color", cell=(0, 0), value="blue")]


def test_parser_reads_two_clauses_in_order_with_it():
    out = apply_text("move the red circle to the bottom right corner, then make it large", SCENE)
    assert out.at((2, 2)) == Obj("circle", "red", "large", 2, 2)
    # The second reference is read in the scene the first clause left.
    assert apply_text("make the red circle green and move the green circle to the top", SCENE).at((0, 1)).color == "green"


@pytest.mark.parametrize("text", [
    "asdf qwerty",                          # unknown words
    "make the red circle bleu",             # misspelt color
    "make the green circle blue",           # no such object
    "make the large red circle blue",       # wrong attribute: the red circle is small
    "make the red circle at the center blue",  # wrong position
    "make the red circle red",              # changes nothing
    "make it blue",                         # 'it' with nothing before
    "add a small blue star at the top",     # a second blue star breaks the scene rules
    "move the red circle to the center",    # the cell is taken
    "make the red circle",                  # unfinished
    "make the red circle blue and",         # dangling connector
    "make the red circle blue!",            # unexpected character
    "",
])
def test_parser_is_strict(text):
    assert apply_text(text, SCENE) is None
    with pytest.raises(ParseError):
        parse(text, SCENE)


def test_parser_refuses_ambiguous_references():
    two_circles = Scene("plain", (RED_CIRCLE, Obj("circle", "blue", "large", 2, 2)))
    with pytest.raises(ParseError, match="could be any of 2"):
        parse("make the circle green", two_circles)
    assert apply_text("make the small circle green", two_circles).at((0, 0)).color == "green"


def test_a_text_with_a_wrong_word_never_gives_the_target(pairs):
    swaps = {**{c: COLORS[(i + 1) % len(COLORS)] for i, c in enumerate(COLORS)},
             **{s: SHAPES[(i + 1) % len(SHAPES)] for i, s in enumerate(SHAPES)}, "small": "large", "large": "small"}
    checked = 0
    for ref, tgt, _, text in pairs[:600]:
        words = text.split()
        for i, w in enumerate(words):
            if w.lower().strip(".,;") in swaps:
                bad = " ".join(words[:i] + [swaps[w.lower().strip(".,;")]] + words[i + 1:])
                assert apply_text(bad, ref) != tgt, (text, bad)
                checked += 1
                break
    assert checked > 300


# --- rendering -------------------------------------------------------------------------------

def test_render_is_rgb_deterministic_and_cache_does_not_change_pixels():
    for size in (64, 100):
        img = render(SCENE, size)
        assert img.mode == "RGB" and img.size == (size, size)
        assert png_bytes(img) == png_bytes(render(SCENE, size)) == png_bytes(render(SCENE, size, cache=False))


def test_every_setting_renders_distinguishably():
    means = {s: np.asarray(render(Scene(s, (RED_CIRCLE,)))).reshape(-1, 3).mean(0) for s in SETTINGS}
    for a in SETTINGS:
        for b in SETTINGS:
            if a < b:
                assert np.abs(means[a] - means[b]).max() > 15, (a, b)


def test_objects_are_never_hidden_by_decorations():
    rng = random.Random(0)
    world = ShapesWorld(max_objects=9)
    for setting in SETTINGS:
        for _ in range(10):
            s = Scene(setting, world.sample_scene(rng).objects)
            px = np.asarray(render(s, 64)).astype(int)
            for o in s.objects:
                y, x = round((o.row + 0.5) * 64 / 3), round((o.col + 0.5) * 64 / 3)
                centre = px[y - 1:y + 2, x - 1:x + 2].reshape(-1, 3)
                assert np.abs(centre - PALETTE[o.color]).max(-1).min() < 40, (setting, o)


def test_sizes_are_visibly_different_at_64px():
    def painted(size):
        img = np.asarray(render(Scene("plain", (Obj("square", "blue", size, 1, 1),)), 64)).astype(int)
        return int((np.abs(img - PALETTE["blue"]).max(-1) < 30).sum())
    assert painted("large") > 3 * painted("small") > 0


# --- the world -------------------------------------------------------------------------------

def test_pool_is_deterministic_and_keeps_the_scene_rules():
    world = ShapesWorld(families=60, variants_per_family=4, max_objects=4, seed=11)
    pool = list(world.pool())
    assert [r["image_id"] for r in pool] == [r["image_id"] for r in ShapesWorld(
        families=60, variants_per_family=4, max_objects=4, seed=11).pool()]
    assert [r["image_id"] for r in pool] != [r["image_id"] for r in ShapesWorld(families=60, seed=12).pool()]
    assert len({r["image_id"] for r in pool}) == len(pool) > 250
    families = defaultdict(list)
    for r in pool:
        s = r["scene"]
        assert len({(o.color, o.shape) for o in s.objects}) == len({o.cell for o in s.objects}) == len(s.objects)
        assert 1 <= len(s.objects) <= 4 and r["caption"] == s.caption()
        families[r["label"]].append(s)
    for members in families.values():
        base, *variants = members
        assert all(len(diff(base, v)) == 1 for v in variants)
        assert all(diff(a, b) is not None for a in members for b in members)


def test_same_seed_same_png_bytes():
    a = [png_bytes(ShapesWorld(seed=1).image(r["scene"])) for r in list(ShapesWorld(families=5, seed=1).pool())]
    b = [png_bytes(ShapesWorld(seed=1).image(r["scene"])) for r in list(ShapesWorld(families=5, seed=1).pool())]
    assert a == b


def test_world_takes_the_config_values():
    cfg = ShapesWorldConfig(image_size=32, families=3, variants_per_family=2, max_objects=2)
    for world in (ShapesWorld.from_config(cfg, seed=4), ShapesWorld(**cfg.model_dump(), seed=4)):
        rows = list(world.pool())
        assert len(rows) <= 9 and {r["label"] for r in rows} == {"0", "1", "2"}
        assert world.image(rows[0]["scene"]).size == (32, 32)


def test_sample_pair_is_seeded_only_by_its_rng():
    world = ShapesWorld(seed=0)
    random.seed(123)  # global state must not matter
    a = [world.sample_pair(random.Random(9), 2) for _ in range(3)]
    random.seed(456)
    assert a == [world.sample_pair(random.Random(9), 2) for _ in range(3)]


# --- the editor ------------------------------------------------------------------------------

def test_editor_renders_the_scene_an_instruction_describes():
    scene, img = edit(SCENE, "remove the blue star and switch to a night background")
    assert scene == Scene("night", (RED_CIRCLE,))
    assert png_bytes(img) == png_bytes(render(scene))
    assert edit(SCENE, "remove the green star") is None
