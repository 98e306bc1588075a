"""Round trip and text-image consistency on ShapesWorld: exact, by the parser."""
from filters.roundtrip import RoundtripFilter, exact_roundtrip
from filters.text_image_consistency import TextImageConsistencyFilter
from pipeline.shapesworld import Scene
from tests.filters.rows import batch_of, rows


def test_annotator_rows_pass_and_swapped_texts_fail():
    rs = rows(30)
    good = RoundtripFilter()(batch_of(rs))
    assert all(s["roundtrip"] == 1.0 for s in good["scores"]) and not any(good["reject_reasons"])
    swapped = [dict(r, modification_text=r["reverse_text"], reverse_text=r["modification_text"]) for r in rs]
    out = RoundtripFilter()(batch_of(swapped))
    assert all(out["reject_reasons"]) and all(s["roundtrip"] < 1 for s in out["scores"])
    out = TextImageConsistencyFilter()(batch_of(swapped))
    assert all(r == ["text_image_consistency:text_does_not_match_images"] for r in out["reject_reasons"])


def test_roundtrip_scores_partial_credit():
    r = rows(1)[0]
    ref, tgt = Scene.from_json(r["reference_scene"]), Scene.from_json(r["target_scene"])
    assert exact_roundtrip(r["modification_text"], r["reverse_text"], ref, tgt) == 1.0
    # A wrong forward text: only rev(tgt) = ref still holds.
    assert exact_roundtrip("use a night background", r["reverse_text"], ref, tgt) <= 1 / 3 + 1e-9


def test_rows_without_a_reverse_text_are_left_unscored():
    r = dict(rows(1)[0], reverse_text=None)
    out = RoundtripFilter()(batch_of([r]))
    assert "roundtrip" not in out["scores"][0] and out["reject_reasons"] == [[]]
