"""The reproduction table's parts: held-out ShapesWorld sets, the summary, the doc block; end to end (slow)."""
import json

import pytest

from pipeline.shapesworld import Scene, apply_text
from pipeline.shapesworld.sets.retrieval import Seen, image_digest, row_image_ids, shapesworld_triplets
from trainers.reproduce import ROWS, ReproduceConfig, reproduce
from trainers.reproduce.table import DOC_BEGIN, DOC_END, markdown_table, summarize, write_doc


def test_sets_are_exact_deterministic_and_grouped():
    rows = shapesworld_triplets(6, 3, seed=11, image_size=32, require_negatives=True)
    assert len(rows) == 18 and rows == shapesworld_triplets(6, 3, seed=11, image_size=32, require_negatives=True)
    assert len({r["reference_id"] for r in rows}) == 6
    for r in rows:
        ref, tgt = Scene.from_json(r["reference_scene"]), Scene.from_json(r["target_scene"])
        assert apply_text(r["modification_text"], ref) == tgt and apply_text(r["reverse_text"], tgt) == ref
        negs = {r["neg_text_aligned_id"], r["neg_image_aligned_id"]}
        assert None not in negs and not negs & {r["reference_id"], r["target_id"]}


def test_a_benchmark_shares_no_image_with_what_it_excludes():
    train = shapesworld_triplets(40, 1, seed=5, image_size=32)
    ids = row_image_ids(train)
    digests = {image_digest(r[c]) for r in train for c in ("neg_text_aligned_image", "neg_image_aligned_image") if r[c]}
    # the same seed would redraw the same scenes: exclusion must steer around every one of them
    bench = shapesworld_triplets(40, 1, seed=5, image_size=32, exclude=Seen(ids, digests, image_size=32))
    assert not row_image_ids(bench) & ids
    shown = {image_digest(r[c]) for r in bench
             for c in ("reference_image", "target_image", "neg_text_aligned_image", "neg_image_aligned_image") if r[c]}
    assert not shown & digests


def test_summary_is_mean_and_sample_std_and_the_doc_block_is_replaced(tmp_path):
    runs = [{"row": ROWS[0].name, "seed": s, "metrics": {"R@1": v, "R@5": 2 * v, "Rs@1": 1.0, "hard_R@1": 3.0,
                                                         "focus_imbalance": 0.5}} for s, v in ((0, 1.0), (1, 3.0))]
    (s,) = summarize(runs)
    assert s["R@1"]["mean"] == 2.0 and s["R@1"]["std"] == pytest.approx(2 ** 0.5) and s["R@5"]["mean"] == 4.0
    table = markdown_table([s])
    assert "| seed set only | 2.0 ± 1.4 | 4.0 ± 2.8 | 1.0 ± 0.0 | 3.0 ± 0.0 | 0.500 ± 0.000 |" in table
    doc = tmp_path / "r.md"
    doc.write_text(f"# t\n\nbefore\n{DOC_BEGIN}\nstale-block\n{DOC_END}\nafter\n")
    results = {"date": "d", "seconds": 60.0, "data_seconds": 1.0, "load_before": (1.0, 0, 0), "load_after": (2.0, 0, 0),
               "machine": {"cores": 2, "cpu": "c", "python": "3"}, "summary": [s],
               "data": {"synthetic_train_rows": 1, "synthetic_rows_with_negatives": 1, "synthetic_generator": ["g"],
                        "seed_set_rows": 1, "benchmark_queries": 1, "benchmark_gallery": 2}}
    text = write_doc(results, doc, "cmd").read_text()
    assert text.startswith("# t\n\nbefore\n") and text.endswith("after\n") and "stale-block" not in text and table in text


@pytest.mark.slow
def test_reproduce_end_to_end_at_toy_size_and_rerun_from_cache(tmp_path):
    cfg = ReproduceConfig.model_validate({
        "out_dir": tmp_path, "train_seeds": [0, 1], "image_size": 32, "workers": 1,
        "seed_set": {"n_triplets": 12}, "benchmark": {"references": 4, "targets_per_reference": 2, "focus_queries": 2},
        # annotator texts in both synthetic sets: training a toy MTST generator is its own (slow) test
        "synthetic": {"source": {"shapesworld": {"families": 6}}, "embedder": {"tiny": {"image_size": 32}},
                      "generator": {"kind": "annotator"}},
        "model": {"tiny": {"vision_hidden": 16, "qformer_hidden": 16, "num_query_tokens": 2, "embed_dim": 8}},
        "pretrain": {"steps": 2, "batch_size": 4}, "finetune": {"steps": 2, "batch_size": 4},
    })
    out = reproduce(cfg)
    assert [s["row"] for s in out["summary"]] == [r.name for r in ROWS]
    assert all(s["seeds"] == [0, 1] for s in out["summary"])
    assert out["data"]["benchmark_queries"] == 8 and out["data"]["synthetic_rows_with_negatives"] > 0
    for s in out["summary"]:
        assert 0 <= s["R@1"]["mean"] <= s["R@5"]["mean"] <= 100 and 0 <= s["focus_imbalance"]["mean"] <= 1
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    again = reproduce(cfg)  # everything from the cache: the same numbers, no new training folder
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == runs
    assert again["summary"] == out["summary"]
    assert json.loads((tmp_path / "results.json").read_text())["summary"] == again["summary"]
