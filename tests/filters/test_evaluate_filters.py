"""The acceptance figure: filters reject injected bad texts on ShapesWorld with known truth."""
from filters.config import FiltersConfig
from filters.evaluate_filters import BAD_KINDS, evaluate
from filters.specs import filter_stage_specs


def test_precision_and_recall_at_rejecting_injected_bad_texts():
    res = evaluate(n=300, bad_rate=0.3, seed=1)
    assert res["precision"] >= 0.95 and res["recall"] >= 0.90
    assert all(res["per_kind"][k]["injected"] > 0 for k in BAD_KINDS)
    assert res["true_positives"] + res["false_negatives"] == res["bad"]


def test_specs_follow_the_config():
    names = [s.cls.name for s in filter_stage_specs(FiltersConfig())]
    # duplicates is a driver stage: last, over rows in run order
    assert names == ["text_sanity", "roundtrip", "text_image_consistency", "clip_direction",
                     "image_similarity", "duplicates"]
    assert "embed" in [s.cls.name for s in filter_stage_specs(FiltersConfig(), embedder={"factory": "x:y"})]
    cfg = FiltersConfig(duplicates={"enabled": False}, clip_direction={"min_score": 0.3})
    specs = filter_stage_specs(cfg)
    assert "duplicates" not in [s.cls.name for s in specs]
    assert next(s for s in specs if s.cls.name == "clip_direction").kwargs == {"min_score": 0.3}
    assert filter_stage_specs(FiltersConfig(enabled=False)) == []
