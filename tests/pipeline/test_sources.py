"""Sources: every kind yields sorted rows in the HF Image layout and reports bad inputs, never crashes."""
from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline.config import SourceConfig
from pipeline.sources import (CirrSource, FashionIQSource, FolderSource, ParquetSource, check_image_bytes,
                              decode_image, make_source)


def image_bytes(fmt: str = "PNG", color=(200, 30, 30), size=(24, 16)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format=fmt)
    return buf.getvalue()


def write(path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def reasons(source) -> dict[str, str]:
    return {i: r.split(":")[0] for i, r in source.skipped}


# -- folder -----------------------------------------------------------------------------------
@pytest.fixture
def photo_folder(tmp_path):
    root = tmp_path / "photos"
    for i, fmt in enumerate(["JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF"]):
        ext = {"JPEG": "jpg", "TIFF": "tiff"}.get(fmt, fmt.lower())
        write(root / ("cats" if i % 2 else "dogs") / f"img{i}.{ext}", image_bytes(fmt, color=(40 * i, 90, 200)))
    write(root / "top.jpeg", image_bytes("JPEG"))
    write(root / "bad" / "truncated.jpg", image_bytes("JPEG", size=(64, 64))[:300])
    write(root / "bad" / "empty.png", b"")
    write(root / "bad" / "notes.jpg", b"this is a text file with an image extension\n")
    write(root / "readme.txt", b"not a candidate: no image extension")
    write(root / ".hidden" / "x.png", image_bytes())
    return root


def test_folder_yields_sorted_rows_with_labels_and_original_bytes(photo_folder):
    src = FolderSource(photo_folder)
    rows = list(src)
    ids = [r["image_id"] for r in rows]
    assert ids == sorted(ids) and len(ids) == 7
    assert ids[0] == "cats/img1.png" and "top.jpeg" in ids
    by_id = {r["image_id"]: r for r in rows}
    assert by_id["dogs/img0.jpg"]["label"] == "dogs" and by_id["top.jpeg"]["label"] is None
    assert by_id["dogs/img0.jpg"]["image"]["bytes"] == (photo_folder / "dogs/img0.jpg").read_bytes()
    assert decode_image(by_id["cats/img5.tiff"]["image"]).size == (24, 16)


def test_folder_reports_bad_files_with_their_reason(photo_folder):
    src = FolderSource(photo_folder)
    rows = list(src)
    assert reasons(src) == {"bad/empty.png": "empty", "bad/notes.jpg": "not_image", "bad/truncated.jpg": "corrupt"}
    assert (src.seen, len(rows), len(src.skipped), len(src.converted)) == (10, 7, 3, 1)
    assert [(i, why.split(" ")[0:2]) for i, why in src.converted] == [("dogs/img4.gif", ["mode", "P"])]
    assert src.seen == len(rows) + len(src.skipped)
    list(src)  # a second pass starts its counts afresh
    assert (src.seen, len(src.skipped)) == (10, 3)


def test_folder_metadata_jsonl_adds_captions(tmp_path):
    write(tmp_path / "a.png", image_bytes())
    (tmp_path / "metadata.jsonl").write_text(json.dumps({"file_name": "a.png", "caption": "a red box"}) + "\n")
    assert [r["caption"] for r in FolderSource(tmp_path)] == ["a red box"]


def test_decompression_bombs_are_skipped(tmp_path, monkeypatch):
    write(tmp_path / "big.png", image_bytes(size=(40, 40)))
    src = FolderSource(tmp_path, max_pixels=1000)
    assert list(src) == [] and reasons(src) == {"big.png": "too_large"}
    # Pillow's own guard (its warning past MAX_IMAGE_PIXELS, its error past twice that) also skips.
    for limit in (700, 1000):
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
        assert check_image_bytes(image_bytes(size=(40, 40))).startswith("too_large")


# -- parquet ----------------------------------------------------------------------------------
def test_parquet_sorts_by_id_reads_structs_bytes_and_paths(tmp_path):
    write(tmp_path / "files" / "p.png", image_bytes(color=(1, 2, 3)))
    images = [{"bytes": image_bytes(), "path": "x.png"}, {"bytes": b"garbage", "path": None},
              {"bytes": None, "path": "files/p.png"}, {"bytes": None, "path": "files/missing.png"},
              {"bytes": image_bytes("JPEG"), "path": None}]
    table = pa.table({"img": pa.array(images, type=pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
                      "key": ["e", "a", "c", "d", "b"], "category": [0, 1, 0, 1, 1], "text": list("vwxyz")})
    hf = {"info": {"features": {"category": {"_type": "ClassLabel", "names": ["cat", "dog"]}}}}
    table = table.replace_schema_metadata({"huggingface": json.dumps(hf)})
    pq.write_table(table, tmp_path / "t.parquet", row_group_size=2)
    src = ParquetSource(tmp_path / "t.parquet", image_column="img", id_column="key")
    rows = list(src)
    assert [r["image_id"] for r in rows] == ["b", "c", "e"]
    assert [(r["label"], r["caption"]) for r in rows] == [("dog", "z"), ("cat", "x"), ("cat", "v")]
    assert rows[1]["image"]["bytes"] == (tmp_path / "files/p.png").read_bytes()
    assert reasons(src) == {"a": "not_image", "d": "missing"}


def test_parquet_folder_from_hf_datasets_without_id_column(tmp_path):
    datasets = pytest.importorskip("datasets")
    feats = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["red", "blue"])})
    ds = datasets.Dataset.from_dict({"image": [Image.new("RGB", (8, 8), c) for c in ("red", "blue", (200, 0, 0))],
                                     "label": [0, 1, 0]}, features=feats)
    (tmp_path / "data").mkdir()
    ds.to_parquet(str(tmp_path / "data" / "train-00000.parquet"))
    rows = list(ParquetSource(tmp_path / "data"))
    assert [r["image_id"] for r in rows] == [f"train-00000:{i:08d}" for i in range(3)]
    assert [r["label"] for r in rows] == ["red", "blue", "red"]


def test_parquet_unknown_column_is_a_clear_error(tmp_path):
    pq.write_table(pa.table({"image": [image_bytes()]}), tmp_path / "t.parquet")
    with pytest.raises(ValueError, match="id column 'nope' not found"):
        ParquetSource(tmp_path / "t.parquet", id_column="nope")


# -- CIRR and FashionIQ -----------------------------------------------------------------------
def test_cirr_layout_pool_and_seed_triplets(tmp_path):
    names = [f"train-1-0-img{i}" for i in range(4)]
    for n in names[:3]:  # img3 is listed but its file is absent
        write(tmp_path / "train" / "1" / f"{n}.png", image_bytes(color=(60 * int(n[-1]), 0, 0)))
    split = {n: f"./train/1/{n}.png" for n in names}
    caps = [{"pairid": 7, "reference": names[1], "target_hard": names[0], "caption": "make it darker",
             "img_set": {"id": 1, "members": names}},
            {"pairid": 8, "reference": names[0], "target_hard": "train-9-9-img9", "caption": "x",
             "img_set": {"id": 1, "members": names}}]
    write(tmp_path / "captions" / "cap.rc2.train.json", json.dumps(caps).encode())
    write(tmp_path / "image_splits" / "split.rc2.train.json", json.dumps(split).encode())
    src = make_source(SourceConfig(kind="cirr", path=tmp_path))
    rows = list(src)
    assert [r["image_id"] for r in rows] == names[:3] and {r["label"] for r in rows} == {"set-1"}
    assert reasons(src) == {names[3]: "missing"}
    assert [(t["reference_id"], t["target_id"], t["modification_text"]) for t in src.triplets()] == \
        [(names[1], names[0], "make it darker")]
    assert src.skipped_triplets[0][1].startswith("unknown_image")


def test_fashioniq_layout_pool_and_seed_triplets(tmp_path):
    write(tmp_path / "images" / "B01.png", image_bytes())
    write(tmp_path / "images" / "B02.jpg", image_bytes("JPEG"))
    write(tmp_path / "images" / "S01.png", image_bytes(color=(0, 0, 250)))
    write(tmp_path / "images" / "S02.png", b"")
    write(tmp_path / "captions" / "cap.dress.train.json",
          json.dumps([{"candidate": "B01", "target": "B02", "captions": ["is longer", "has sleeves"]}]).encode())
    write(tmp_path / "captions" / "cap.shirt.train.json",
          json.dumps([{"candidate": "S02", "target": "S01", "captions": ["is blue", "no logo"]}]).encode())
    src = FashionIQSource(tmp_path)
    rows = list(src)
    assert [(r["image_id"], r["label"]) for r in rows] == [("B01", "dress"), ("B02", "dress"), ("S01", "shirt")]
    assert reasons(src) == {"S02": "empty"}
    assert [t["modification_text"] for t in src.triplets()] == ["is longer and has sleeves", "is blue and no logo"]


# -- ShapesWorld and the factory --------------------------------------------------------------
def test_shapesworld_source_is_deterministic_and_carries_the_scene():
    cfg = SourceConfig(kind="shapesworld", shapesworld={"families": 6, "variants_per_family": 2, "image_size": 32})
    a, b = list(make_source(cfg, seed=3)), list(make_source(cfg, seed=3))
    assert [r["image_id"] for r in a] == sorted(r["image_id"] for r in a)
    assert [r["image"]["bytes"] for r in a] == [r["image"]["bytes"] for r in b]
    assert decode_image(a[0]["image"]).size == (32, 32)
    assert a[0]["caption"] and json.loads(a[0]["scene"])["objects"]
    assert [r["image_id"] for r in make_source(cfg, seed=4)] != [r["image_id"] for r in a]


def test_make_source_folder(photo_folder):
    src = make_source(SourceConfig(kind="folder", path=photo_folder))
    assert isinstance(src, FolderSource) and len(list(src)) == 7
