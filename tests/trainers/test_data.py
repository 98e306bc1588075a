"""Streaming triplet rows from shards and from memory, and collating them."""
import pytest
import torch

from tests.trainers.tinyworld import SIZE
from trainers.data import MemoryTriplets, ParquetTriplets, collate, row_batches
from trainers.factory import build_word_tokenizer


def test_parquet_rows_stream_by_row_group(dataset_dir, rows):
    source = ParquetTriplets(dataset_dir)
    assert len(source) == 8
    assert len(source.units) == 5  # 5 rows in groups of 2 -> 3, then 3 rows -> 2: never the whole table at once
    assert [r["triplet_id"] for r in source.rows()] == [r["triplet_id"] for r in rows]


def test_shuffle_is_a_function_of_seed_and_epoch(dataset_dir):
    source = ParquetTriplets(dataset_dir)
    ids = lambda seed, epoch: [r["triplet_id"] for r in source.rows(seed, epoch, buffer=3)]  # noqa: E731
    assert ids(0, 0) == ids(0, 0)
    assert sorted(ids(0, 0)) == sorted(ids(0, 1)) and ids(0, 0) != ids(0, 1)


def test_missing_split_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="data/val"):
        ParquetTriplets(tmp_path, "val")


def test_collate_masks_null_negatives_and_reverse_texts(rows):
    rows = [dict(r) for r in rows[:3]]
    rows[2]["reverse_text"] = None
    tok = build_word_tokenizer([r["modification_text"] for r in rows])
    b = collate(rows, tok, SIZE, max_text_len=12)
    assert b.reference.shape == b.target.shape == (3, 3, SIZE, SIZE)
    assert b.input_ids.shape == b.reverse_ids.shape == (3, 12)
    assert b.negatives.shape == (3, 2, 3, SIZE, SIZE)
    # fixture: row 0 has no text-aligned negative (i % 3 == 0), every row has an image-aligned one
    assert b.neg_mask.tolist() == [[False, True], [True, True], [True, True]]
    assert torch.count_nonzero(b.negatives[0, 0]) == 0
    assert b.has_reverse.tolist() == [True, True, False]
    assert b.input_ids[0, 0] == tok.cls_token_id


def test_images_by_path_resolve_under_the_dataset(tmp_path, rows):
    from PIL import Image
    import io

    Image.open(io.BytesIO(rows[0]["reference_image"]["bytes"])).save(tmp_path / "ref.png")
    row = {**rows[0], "reference_image": {"bytes": None, "path": "ref.png"}}
    tok = build_word_tokenizer([row["modification_text"]])
    b = collate([row], tok, SIZE, root=tmp_path)
    assert torch.equal(b.reference, collate([rows[0]], tok, SIZE).reference)


def test_row_batches_cycle_epochs_and_drop_the_short_tail(rows):
    batches = row_batches(MemoryTriplets(rows[:5]), batch_size=2, seed=1)
    got = [next(batches) for _ in range(4)]
    assert [e for e, _ in got] == [0, 0, 1, 1]  # 5 rows -> 2 full batches per epoch
    assert all(len(chunk) == 2 for _, chunk in got)
    tiny = row_batches(MemoryTriplets(rows[:1]), batch_size=4)
    assert len(next(tiny)[1]) == 1  # a seed set smaller than a batch still trains


def test_seed_rows_may_hold_pil_images_or_pixel_tensors(rows):
    from tests.trainers.tinyworld import render

    tok = build_word_tokenizer([r["modification_text"] for r in rows])
    as_bytes = collate(rows[:1], tok, SIZE)
    pil_row = {**rows[0], "reference_image": render("square", "red"), "target_image": as_bytes.target[0]}
    b = collate([pil_row], tok, SIZE)
    assert b.reference.shape == (1, 3, SIZE, SIZE) and torch.equal(b.target, as_bytes.target)
