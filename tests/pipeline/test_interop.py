"""Interop (issue 7.6): a generated dataset exported to the CIRR and FashionIQ layouts reads back
through our CIRR / FashionIQ sources with the same triplets and pixel-equal images."""
from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from pipeline.job.config import parse_config
from pipeline.config import SourceConfig
from pipeline.export import CIRR_SPLITS, EXPORT_FILE, export_dataset, image_name
from pipeline.sources import decode_image, make_source


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A small ShapesWorld dataset: label mining, ground-truth texts, all three splits."""
    from pipeline.job.generate import generate

    tmp = tmp_path_factory.mktemp("interop")
    cfg = parse_config({
        "name": "sw-interop", "out_dir": str(tmp / "out"), "cache_dir": str(tmp / "cache"), "seed": 3,
        "source": {"kind": "shapesworld", "shapesworld": {"families": 24, "variants_per_family": 3, "image_size": 32}},
        "mining": {"strategies": ["label"], "k": 2, "near_dup": 1.0},
        "splits": {"train": 0.5, "val": 0.25, "test": 0.25}, "shards": {"rows_per_unit": 16},
        "generator": {"kind": "annotator"}, "negatives": {"enabled": False}, "filters": {"enabled": False},
        "runtime": {"progress": False}})
    manifest = generate(cfg, executor="local", progress=False)
    assert set(manifest["rows"]["per_split"]) == {"train", "val", "test"}
    return cfg.dataset_dir


def kept_rows(dataset, split):
    files = sorted((dataset / "data" / split).glob("*.parquet"))
    return [r for f in files for r in pq.read_table(f).to_pylist()]


def pixels(cell) -> np.ndarray:
    return np.asarray(decode_image(cell))


def check_round_trip(dataset, out, kind, split_names, **options):
    record = json.loads((out / EXPORT_FILE).read_text())
    names = record["names"]
    for ours, theirs in split_names.items():
        rows = kept_rows(dataset, ours)
        src = make_source(SourceConfig(kind=kind, path=out, options={"split": theirs, **options}))
        pool = {r["image_id"]: r for r in src}
        assert src.skipped == []
        triplets = src.triplets()
        assert src.skipped_triplets == []
        got = [(names[t["reference_id"]], names[t["target_id"]], t["modification_text"]) for t in triplets]
        want = sorted((r["reference_id"], r["target_id"], r["modification_text"]) for r in rows)
        assert got == want and len(got) > 0
        for r in rows:  # every image, pixel for pixel
            for col, key in (("reference_image", "reference_id"), ("target_image", "target_id")):
                assert np.array_equal(pixels(pool[image_name(r[key])]["image"]), pixels(r[col]))


def test_cirr_export_round_trip(dataset, tmp_path):
    out = tmp_path / "cirr"
    record = export_dataset(dataset, "cirr", out)
    assert set(record["splits"]) == {"train", "val", "test1"}
    check_round_trip(dataset, out, "cirr", {s: CIRR_SPLITS[s][0] for s in ("train", "val", "test")})
    # the files a CIRR loader opens: cirr/captions records with the official keys, paths relative to the root
    assert not (out / "captions").exists()
    cap = json.loads((out / "cirr" / "captions" / "cap.rc2.val.json").read_text())[0]
    assert set(cap) == {"pairid", "reference", "target_hard", "target_soft", "caption", "img_set"}
    assert cap["reference"] in cap["img_set"]["members"] and cap["target_hard"] in cap["img_set"]["members"]
    split_map = json.loads((out / "cirr" / "image_splits" / "split.rc2.val.json").read_text())
    assert all(p.startswith("./dev/") and (out / p).is_file() for p in split_map.values())
    # the MTST authors' PTHA loader: cirr/captions/cirr_train_modifier_rev_long.json, one record a line
    train_map = json.loads((out / "cirr" / "image_splits" / "split.rc2.train.json").read_text())
    lines = (out / "cirr" / "captions" / "cirr_train_modifier_rev_long.json").read_text().splitlines()
    rows = {(image_name(r["reference_id"]), image_name(r["target_id"])): r for r in kept_rows(dataset, "train")}
    assert len(lines) == len(rows) == record["splits"]["train"]["reverse_texts"]
    for rec in map(json.loads, lines):
        assert rec["modifier_generated"] == rows[(rec["reference"], rec["target_hard"])]["reverse_text"]
        assert (out / train_map[rec["reference"]]).is_file() and (out / train_map[rec["target_hard"]]).is_file()


def test_fashioniq_export_round_trip(dataset, tmp_path):
    out = tmp_path / "fiq"
    record = export_dataset(dataset, "fashioniq", out, category="dress")
    assert record["category"] == "dress" and set(record["splits"]) == {"train", "val", "test"}
    check_round_trip(dataset, out, "fashioniq", {"train": "train", "val": "val", "test": "test"})
    cap = json.loads((out / "captions" / "cap.dress.train.json").read_text())[0]
    assert set(cap) == {"candidate", "target", "captions"} and len(cap["captions"]) == 2
    # the official loaders open images/<name>.png for every name of image_splits
    for split in ("train", "val", "test"):
        names = json.loads((out / "image_splits" / f"split.dress.{split}.json").read_text())
        assert all((out / "images" / f"{n}.png").is_file() for n in names)
    assert {p.suffix for p in (out / "images").iterdir()} == {".png"}
    # the MTST authors' PTHA loader: captions/cap_train_dress_rev.json, candidate / target with the extension
    recs = [json.loads(x) for x in (out / "captions" / "cap_train_dress_rev.json").read_text().splitlines()]
    assert len(recs) == record["splits"]["train"]["reverse_texts"] > 0
    assert all((out / "images" / r["candidate"].replace("jpg", "png")).is_file() and r["modifier_generated"]
               for r in recs)


def test_export_refuses_a_non_empty_out_and_unknown_format(dataset, tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("keep me")
    with pytest.raises(FileExistsError, match="not empty"):
        export_dataset(dataset, "cirr", tmp_path / "busy")
    assert (tmp_path / "busy" / "x").read_text() == "keep me"
    with pytest.raises(ValueError, match="allowed are cirr, fashioniq"):
        export_dataset(dataset, "coco", tmp_path / "new")
    assert not (tmp_path / "new").exists()


def test_image_names_are_file_safe_and_distinct():
    assert image_name("sw-0008b7f734d8") == "sw-0008b7f734d8"
    odd = ["cats/img1.png", "../../etc/passwd", "caf\\xe9.png", ".hidden"]
    names = [image_name(i) for i in odd]
    assert all(n.startswith("img-") and "/" not in n for n in names[:2] + names[3:]) and len(set(names)) == 4


def test_cli_export(dataset, tmp_path):
    from pipeline.job.cli import app

    res = CliRunner().invoke(app, ["export", str(dataset), "--format", "fashioniq", "--out", str(tmp_path / "e")])
    assert res.exit_code == 0, res.output
    assert "fashioniq" in res.output and (tmp_path / "e" / "captions" / "cap.cirforge.train.json").is_file()
    res = CliRunner().invoke(app, ["export", str(tmp_path / "nope"), "--format", "cirr", "--out", str(tmp_path / "f")])
    assert res.exit_code == 2 and "no manifest.json" in res.output


def test_fashioniq_export_writes_jpeg_as_png_with_the_same_pixels():
    import io

    from PIL import Image

    from pipeline.export import _image_file

    buf = io.BytesIO()
    Image.new("RGB", (20, 12), (200, 30, 90)).save(buf, "JPEG")
    cell = {"bytes": buf.getvalue(), "path": None}
    assert _image_file(cell)[1] == ".jpg"  # CIRR: the split map gives the path, bytes as they are
    data, ext = _image_file(cell, png_only=True)
    assert ext == ".png" and np.array_equal(pixels({"bytes": data, "path": None}), pixels(cell))
