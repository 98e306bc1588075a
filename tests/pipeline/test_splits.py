"""Splits by ratio: drawn per image (per family for ShapesWorld), pairs mined within a split."""
from __future__ import annotations

import io

import numpy as np
import pyarrow.dataset as pads
from PIL import Image

from pipeline.job.config import parse_config
from pipeline.job.generate import generate


def test_one_subfolder_fills_every_split_and_no_image_is_in_two(tmp_path):
    folder = tmp_path / "photos" / "only-label"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(40):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(buf, format="PNG")
        (folder / f"img{i:02d}.png").write_bytes(buf.getvalue())
    cfg = parse_config({"name": "splits", "out_dir": str(tmp_path / "out"), "cache_dir": str(tmp_path / "cache"),
                        "source": {"kind": "folder", "path": str(tmp_path / "photos")},
                        "mining": {"strategies": ["label"], "k": 3, "near_dup": 1.0},
                        "splits": {"train": 0.6, "val": 0.2, "test": 0.2},
                        "shards": {"rows_per_unit": 16}, "runtime": {"progress": False},
                        "generator": {"kind": "annotator"}, "negatives": {"enabled": False},
                        "filters": {"enabled": False}})
    generate(cfg, executor="local", progress=False)
    rows = pads.dataset(sorted(str(p) for p in cfg.dataset_dir.glob("*/**/part-*.parquet")), format="parquet") \
        .to_table(columns=["reference_id", "target_id", "split"]).to_pylist()
    assert {r["split"] for r in rows} == {"train", "val", "test"}
    split_of: dict[str, set] = {}
    for r in rows:
        for i in (r["reference_id"], r["target_id"]):
            split_of.setdefault(i, set()).add(r["split"])
    assert all(len(s) == 1 for s in split_of.values()), {i: s for i, s in split_of.items() if len(s) > 1}
