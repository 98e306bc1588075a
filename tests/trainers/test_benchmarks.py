"""The official-layout readers: what they read, what they skip (with the reason), and early errors."""
from __future__ import annotations

import json

import pytest

from tests.trainers.tinybench import make_circo, make_cirr, make_fashioniq
from trainers.benchmarks import check, detect, read


def test_cirr_splits_groups_and_the_authors_reverse_texts(tmp_path):
    root = make_cirr(tmp_path / "cirr_dataset")
    assert detect(root) == "cirr"
    train, val, test = read(root, "train"), read(root, "val"), read(root, "test")
    assert train.counts() == {"records": 8, "queries": 8, "images": 8, "with_reverse": 8, "skipped": {}}
    assert train.reverse_file.name == "cirr_train_modifier_rev_long.json"
    q = val.queries[0]
    assert (q.qid, q.reference_id, q.target_ids, q.reverse_text) == ("100", "val-square-red", ["val-square-green"], None)
    assert q.group_ids == ["val-square-red", "val-square-green", "val-square-blue", "val-square-yellow"]
    assert test.split == "test1" and not test.has_targets and len(test.queries) == 8
    rows = train.training_rows()
    assert rows[0]["reverse_text"] == "make the square red" and rows[0]["reference_image"]["path"].endswith(".png")


def test_cirr_bad_records_are_skipped_and_counted(tmp_path):
    root = make_cirr(tmp_path / "c", reverse=False)
    caps = json.loads((root / "cirr/captions/cap.rc2.val.json").read_text())
    caps[1].pop("caption")
    caps[2]["target_hard"] = "not-listed"
    (root / "cirr/captions/cap.rc2.val.json").write_text(json.dumps(caps))
    split = json.loads((root / "cirr/image_splits/split.rc2.val.json").read_text())
    split["evil"] = "../../etc/passwd"
    (root / "cirr/image_splits/split.rc2.val.json").write_text(json.dumps(split))
    (root / "dev" / "val-circle-red.png").unlink()
    val = read(root, "val")
    assert val.counts()["skipped"] == {"missing_key": 1, "unknown_image": 3, "outside_root": 1, "missing": 1}
    assert len(val.queries) == 4 and "evil" not in val.images  # 8 - 1 without a caption - 3 (not-listed, 2 x circle-red)
    assert read(root, "train").reverse_file is None  # no reverse file: tolerated


def test_fashioniq_per_category_galleries_and_reverse_texts(tmp_path):
    root = make_fashioniq(tmp_path / "fashionIQ_dataset")
    assert detect(root) == "fashioniq"
    val, train = read(root, "val"), read(root, "train")
    assert val.galleries == {"dress": [f"dress{i}" for i in range(4)], "shirt": [f"shirt{i}" for i in range(4)]}
    assert [q.category for q in val.queries] == ["dress"] * 4 + ["shirt"] * 4
    assert val.queries[0].text == "make the square green and is green"
    assert train.counts()["with_reverse"] == 8 and train.queries[0].reverse_text == "make it red"


def test_circo_every_ground_truth_is_a_target(tmp_path):
    root = make_circo(tmp_path / "circo")
    assert detect(root) == "circo"
    val, test = read(root, "val"), read(root, "test")
    assert val.queries[0].target_ids == ["2", "6"] and val.galleries["all"] == [str(i) for i in range(1, 9)]
    assert not test.has_targets


@pytest.mark.parametrize("kind,split", [("cirr", "val"), ("fashioniq", "val"), ("circo", "val"), (None, "val")])
def test_a_missing_folder_or_file_fails_at_once(tmp_path, kind, split):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty"):
        check(tmp_path / "empty", split, kind)
