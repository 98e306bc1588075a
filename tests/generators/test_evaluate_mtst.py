"""The accuracy command's pieces: held-out pairs as the demo mines them, and a report end to end."""
from pipeline.shapesworld import Scene, apply_text, diff

from generators.mtst.config import MTSTConfig
from generators.mtst.evaluate import caption_accuracy, caption_matches, evaluate_mtst, held_out_pairs
from pipeline.shapesworld.sets.mtst import shapesworld_family_pairs

from .conftest import SMALL


def test_family_pairs_are_one_or_two_edits_apart_and_their_texts_apply():
    pairs = shapesworld_family_pairs(60, seed=3, image_size=32)
    assert len(pairs) == 60 and pairs.images.shape[1:] == (32, 32, 3)
    scenes = [Scene.from_json(s) for s in pairs.scenes]
    edits = [len(diff(scenes[r], scenes[t])) for r, t, _, _ in pairs.pairs]
    assert set(edits) == {1, 2}
    for r, t, fwd, rev in pairs.pairs:
        assert apply_text(fwd, scenes[r]) == scenes[t] and apply_text(rev, scenes[t]) == scenes[r]
    assert len({(r, t) for r, t, _, _ in pairs.pairs}) == 60  # no pair twice
    again = shapesworld_family_pairs(60, seed=3, image_size=32)
    assert again.pairs == pairs.pairs  # deterministic from the seed


def test_report_on_held_out_pairs(tmp_path):
    cfg = MTSTConfig(
        model=SMALL.model_copy(update={"image_size": 32}),
        data={"n_triplets": 24, "image_size": 32},
        train={"epochs": 1, "batch_size": 8, "progress": False, "caption_steps": 0, "cache_dir": str(tmp_path)},
        infer={"max_new_tokens": 8},
        eval={"n_pairs": 12},
    )
    assert held_out_pairs(cfg).scenes[0] != held_out_pairs(cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"seed": 1})})).scenes[0]
    rep = evaluate_mtst(cfg)
    assert rep["n_pairs"] == 12 and rep["pairs"] == "families" and not rep["train_cached"]
    assert 0 <= rep["forward_accuracy"] <= 1 and 0 <= rep["reverse_accuracy"] <= 1
    assert sum(rep["edits_per_pair"].values()) == 12
    # a barely trained model gets most pairs wrong; each failure shows its text and the annotator's
    assert rep["failures"] and {"forward", "annotator", "reverse"} <= set(rep["failures"][0])
    # how well it reads one scene: its text for (scene, scene) against the scene's caption
    cap = caption_accuracy(cfg, rep["model_dir"], 4)
    assert cap["n_scenes"] == 4 and 0 <= cap["caption_exact"] <= 1
    assert len(cap["failures"]) == round(4 * (1 - cap["caption_exact"]))
    assert all(" scene" in f["caption"] for f in cap["failures"])


def test_a_caption_matches_but_for_case_and_a_final_period():
    gold = "a night scene with a small red circle at the top left"
    assert caption_matches("A night scene with a small red circle at the top left.", gold)
    assert not caption_matches("a night scene with a small red circle at the top right", gold)
    assert not caption_matches("a night scene", gold)
