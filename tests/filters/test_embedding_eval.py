"""The embedding-path measurement: its labelled ShapesWorld rows carry known truth, its judge reports
per part and kind, and the combined score's logistic regression fits a separable set."""
import numpy as np
import pytest

from filters.calibrate import embed_rows, load_labelled
from filters.combined import CombinedScoreFilter, as_config, fit, p_bad_array
from filters.embedding_eval import IMAGE_ALIGNED_BAD, TEXT_ALIGNED_BAD, judge, make_labelled, write_sample
from tests.filters.test_calibrate import EMB


def test_labelled_rows_negatives_agree_with_the_exact_checks():
    from generators.negatives import shapesworld as sw
    from pipeline.shapesworld import Scene

    rows = make_labelled(24, seed=3, bad_rate=0.3, neg_bad_rate=0.5, image_size=16)
    assert any(r["label"] for r in rows) and any(not r["label"] for r in rows)
    seen = set()
    for r in rows:
        if r["label"]:  # a bad text: its negatives are not judged
            assert r["neg_text_aligned_image"] is None and r["neg_image_aligned_label"] is None
            continue
        ref, tgt = Scene.from_json(r["reference_scene"]), Scene.from_json(r["target_scene"])
        for part in ("text_aligned", "image_aligned"):
            if r[f"neg_{part}_image"] is None:
                continue
            kind, neg = r[f"neg_{part}_kind"], Scene.from_json(r[f"neg_{part}_scene"])
            seen.add(kind)
            assert r[f"neg_{part}_label"] == (kind != "valid")
            if part == "image_aligned":
                assert (sw.check_image_aligned(neg, ref, tgt) is None) == (kind == "valid")
            elif kind == "valid":
                assert neg not in (ref, tgt) and sw.requested_change(ref, neg) != sw.requested_change(ref, tgt)
    assert "valid" in seen and seen & set(TEXT_ALIGNED_BAD) and seen & set(IMAGE_ALIGNED_BAD)


def test_judge_reports_every_part_per_kind_and_the_sample_round_trips(tmp_path):
    from filters.config import FiltersConfig
    from generators.negatives.config import NegativesConfig

    rows = make_labelled(16, seed=1, image_size=16)
    res = judge(embed_rows(rows, EMB), FiltersConfig(), NegativesConfig())
    assert res["label"]["rows"] == 16 and sum(int(v.split("/")[1]) for v in res["label"]["rejected_per_kind"].values()) == 16
    assert {"neg_text_aligned_label", "neg_image_aligned_label", "reject_reasons"} <= set(res)
    back = load_labelled(write_sample(rows, tmp_path / "s.parquet"))
    assert [b["label"] for b in back] == [r["label"] for r in rows]
    assert [b["neg_image_aligned_label"] for b in back] == [r["neg_image_aligned_label"] for r in rows]
    assert "reference_scene" not in back[0]  # the sample is photo-like: no scene graphs


def test_logistic_regression_separates_a_linear_set():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2))
    y = (x[:, 0] - 2 * x[:, 1] > 0).astype(float)
    x[0, 1] = np.nan  # a missing score counts at the sample's mean
    cfg = as_config(fit(x, y, l2=0.01), ("a", "b"))
    p = p_bad_array(cfg, {"a": x[:, 0], "b": x[:, 1]})
    assert ((p[1:] > 0.5) == (y[1:] > 0)).mean() > 0.97
    # the filter scores rows with the same formula, a missing score included
    rows = [{"scores": {"a": a, "b": None if np.isnan(b) else b}, "emb_text": [1.0]} for a, b in x[:20]]
    assert CombinedScoreFilter(**cfg).score_rows(rows) == pytest.approx(p[:20], abs=1e-5)


def test_the_trained_tiny_clip_reads_edits_on_held_out_rows(tmp_path):
    """A small tiny CLIP trained with the edit losses (seconds on one core): on the measurement's
    held-out rows, the direction filter scores a row's text above its reverse text (the
    swapped_direction injection) and above another row's text (random_text) on most rows."""
    from filters.clip_direction import ClipDirectionFilter
    from filters.embed_columns import EmbedColumnsStage
    from pipeline.config_mining import EmbedderConfig, TinyClipConfig
    from pipeline.embedder import ClipEmbedder
    from pipeline.shapesworld.sets.filters import make_rows

    tiny = TinyClipConfig(image_size=32, patch_size=8, hidden_size=48, layers=1, heads=2, projection_dim=32,
                          families=200, steps=120, batch_size=64, edit_batch=32)
    emb = ClipEmbedder.from_config(EmbedderConfig(tiny=tiny), cache_dir=tmp_path)
    rows = make_rows(120, seed=0, image_size=32)

    def direction(texts):
        batch = EmbedColumnsStage(embedder=emb)({"reference_image": [r["reference_image"] for r in rows],
                                                 "target_image": [r["target_image"] for r in rows],
                                                 "modification_text": texts, "reverse_text": [None] * len(rows)})
        batch = ClipDirectionFilter()({**batch, "scores": [{} for _ in rows]})
        return np.array([s["clip_direction"] for s in batch["scores"]])

    good = direction([r["modification_text"] for r in rows])
    swapped = direction([r["reverse_text"] for r in rows])
    other = direction([rows[(i + 60) % 120]["modification_text"] for i in range(120)])
    assert (good > swapped).mean() >= 0.7 and (good > other).mean() >= 0.6, ((good > swapped).mean(),
                                                                            (good > other).mean())
