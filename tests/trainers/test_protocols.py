"""The official protocols on hand-made rankings (numbers worked out by hand in the comments), against a
re-statement of the released evaluation code's formulas, and the submission files' formats."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from trainers.benchmarks import BenchQuery, BenchSplit
from trainers.protocols import metrics, rankings, submissions, validate_submission


def _split(kind, names, queries, galleries=None):
    return BenchSplit(kind, "val", Path("."), {n: Path(f"{n}.png") for n in names}, queries,
                      galleries or {"all": list(names)})


def _scores(names, rows):
    """rows: one {name: score} per query; unnamed images score -100 (below every named one)."""
    return torch.tensor([[row.get(n, -100.0) for n in names] for row in rows])


def test_cirr_recall_and_subset_recall_by_hand():
    names = list("abcdef")
    qs = [BenchQuery("1", "a", "t", ["c"], group_ids=list("abcd")),
          BenchQuery("2", "b", "t", ["e"], group_ids=list("bef")),
          BenchQuery("3", "c", "t", ["d"], group_ids=list("cd"))]
    scores = _scores(names, [
        # a is the reference (removed): b, e, c, f, d -> c 3rd; subset b, c, d -> c 2nd
        {"a": .9, "b": .8, "c": .7, "d": .1, "e": .75, "f": .2},
        # f, e, d, c, a -> e 2nd; subset f, e -> e 2nd
        {"a": .1, "b": .99, "c": .2, "d": .3, "e": .5, "f": .6},
        # d first once the reference c is out; subset d
        {"c": 1.0, "d": .9},
    ])
    split = _split("cirr", names, qs)
    ranks = rankings(split, names, scores)
    assert ranks["ranked"]["1"] == list("becfd") and ranks["subset"]["1"] == list("bcd")
    m = metrics(split, ranks)
    assert m["R@1"] == pytest.approx(100 / 3) and m["R@5"] == m["R@50"] == 100
    assert m["Rsubset@1"] == pytest.approx(100 / 3) and m["Rsubset@2"] == m["Rsubset@3"] == 100
    assert m["Avg"] == pytest.approx((100 + 100 / 3) / 2)


def _clip4cir_cirr(scores, names, refs, targets, members):
    """CLIP4Cir's compute_cirr_val_metrics restated in numpy: sort, drop the reference, group mask."""
    names = np.array(names)
    sorted_names = names[np.argsort(-scores, axis=1, kind="stable")]
    keep = sorted_names != np.array(refs)[:, None]
    sorted_names = sorted_names[keep].reshape(len(refs), -1)
    labels = sorted_names == np.array(targets)[:, None]
    group_mask = (sorted_names[..., None] == np.array(members)[:, None, :]).sum(-1).astype(bool)
    group_labels = labels[group_mask].reshape(len(refs), -1)
    out = {f"R@{k}": 100 * labels[:, :k].sum() / len(refs) for k in (1, 5, 10, 50)}
    out.update({f"Rsubset@{k}": 100 * group_labels[:, :k].sum() / len(refs) for k in (1, 2, 3)})
    return out


def test_cirr_matches_the_released_formula_on_random_scores():
    g = torch.Generator().manual_seed(0)
    names = [f"img{i}" for i in range(80)]
    members, qs = [], []
    for i in range(40):  # CIRR: 6 members, the reference and the target among them
        m = [names[(7 * i + k) % 80] for k in range(6)]
        members.append(m)
        qs.append(BenchQuery(str(i), m[0], "t", [m[1 + i % 5]], group_ids=m))
    scores = torch.rand(40, 80, generator=g)
    split = _split("cirr", names, qs)
    ours = metrics(split, rankings(split, names, scores))
    ref = _clip4cir_cirr(scores.numpy(), names, [q.reference_id for q in qs], [q.target_ids[0] for q in qs], members)
    assert {k: ours[k] for k in ref} == pytest.approx(ref)


def test_fashioniq_per_category_and_averages_by_hand():
    dress = [f"d{i}" for i in range(12)]
    shirt = [f"s{i}" for i in range(60)]
    qs = [BenchQuery("dress-0", "d0", "t", ["d11"], category="dress"),
          BenchQuery("dress-1", "d1", "t", ["d2"], category="dress"),
          BenchQuery("shirt-0", "s0", "t", ["s55"], category="shirt")]
    names = dress + shirt
    order = {n: -i for i, n in enumerate(names)}  # gallery order: d11 11th, s55 56th in its category
    scores = _scores(names, [order, {**order, "d2": 5.0}, order])
    split = _split("fashioniq", names, qs, {"dress": dress, "shirt": shirt})
    m = metrics(split, rankings(split, names, scores))
    # the reference stays in the gallery (d0 ranks first for dress-0): d11 is 12th -> R@10 0, R@50 1
    assert (m["dress_R@10"], m["dress_R@50"], m["shirt_R@10"], m["shirt_R@50"]) == (50, 100, 0, 0)
    assert (m["average_R@10"], m["average_R@50"], m["average"]) == (25, 50, 37.5)


def _circo_ap(predictions, gts, k):
    """miccunifi/CIRCO evaluation.py: cumsum(labels) * labels / position, summed to K, over min(#gt, K)."""
    labels = np.isin(np.array(predictions), np.array(gts))
    precisions = np.cumsum(labels) * labels / np.arange(1, len(labels) + 1)
    return float(np.sum(precisions[:k]) / min(len(gts), k))


def test_circo_map_by_hand_and_against_the_released_formula():
    names = [str(i) for i in range(1, 61)]
    ranked_1 = ["5", "7", "9"] + [n for n in names if n not in ("5", "7", "9", "12")][:26] + ["12"]  # 12 is 30th
    ranked_2 = ["1", "3", "4", "6", "8", "2"]  # 2 is 6th
    qs = [BenchQuery("0", "60", "t", ["5", "9", "12"]), BenchQuery("1", "59", "t", ["2"])]
    scores = _scores(names, [{n: -i for i, n in enumerate(ranked_1)}, {n: -i for i, n in enumerate(ranked_2)}])
    split = _split("circo", names, qs)
    ranks = rankings(split, names, scores)
    m = metrics(split, ranks)
    # q0: AP@5 = (1/1 + 2/3) / 3 = 0.5556, AP@50 adds 3/30 -> 0.5889; q1: AP@5 = 0, AP@10.. = (1/6) / 1
    assert m["mAP@5"] == pytest.approx(100 * (5 / 9) / 2, abs=1e-4)
    assert m["mAP@10"] == m["mAP@25"] == pytest.approx(100 * (5 / 9 + 1 / 6) / 2, abs=1e-4)
    assert m["mAP@50"] == pytest.approx(100 * ((1 + 2 / 3 + 3 / 30) / 3 + 1 / 6) / 2, abs=1e-4)
    for k in (5, 10, 25, 50):
        official = np.mean([_circo_ap(ranks["ranked"][q.qid], q.target_ids, k) for q in qs])
        assert m[f"mAP@{k}"] == pytest.approx(100 * official)


def test_submission_files_follow_the_official_formats():
    names = [f"n{i}" for i in range(60)]
    qs = [BenchQuery(str(p), names[p], "t", [], group_ids=names[p : p + 6]) for p in range(5)]
    split = _split("cirr", names, qs)
    files = submissions(split, rankings(split, names, torch.rand(5, 60)))
    recall, subset = files["cirr_recall.json"], files["cirr_recall_subset.json"]
    assert (recall["version"], recall["metric"], subset["metric"]) == ("rc2", "recall", "recall_subset")
    assert len(recall["0"]) == 50 and "n0" not in recall["0"] and len(subset["0"]) == 3 and "n0" not in subset["0"]
    validate_submission(recall, split, "recall")
    validate_submission(subset, split, "recall_subset")
    with pytest.raises(ValueError, match="header"):
        validate_submission({**recall, "metric": "recall_subset"}, split, "recall")
    circo = _split("circo", [str(i) for i in range(1, 61)], [BenchQuery("0", "1", "t", [])])
    content = submissions(circo, rankings(circo, list(circo.images), torch.rand(1, 60)))["circo_submission.json"]
    assert len(content["0"]) == 50 and all(isinstance(i, int) for i in content["0"])
    validate_submission(content, circo, "circo")
    with pytest.raises(ValueError, match="FashionIQ"):
        submissions(_split("fashioniq", names, []), {})
