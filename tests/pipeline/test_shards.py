"""Shards: atomic commit, resume by unit, a manifest that adds up, readable by datasets and DuckDB."""
import json
import os
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest

from pipeline.shards import ShardWriter, finalize, verify
from tests.pipeline.rows import row


def test_unit_commits_when_its_last_row_arrives(tmp_path):
    w = ShardWriter(tmp_path)
    w.expect(0, 3)
    assert w.add([row(0, 0), row(0, 1)]) == []
    assert not (tmp_path / "data").exists()
    assert w.add([row(0, 2, split="val")]) == [0]
    assert pq.read_table(tmp_path / "data/train/part-00000.parquet").num_rows == 2
    assert pq.read_table(tmp_path / "data/val/part-00000.parquet").num_rows == 1
    assert w.committed_units() == {0}


def test_rejected_rows_go_apart_and_counts_add_up(tmp_path):
    w = ShardWriter(tmp_path)
    w.expect(0, 4)
    w.add([row(0, 0), row(0, 1, rejected=True), row(0, 2), row(0, 3, rejected=True)])
    m = finalize(tmp_path, {}, "h", units_total=2)
    assert m["rows"] == {"in": 4, "kept": 2, "rejected": 2, "per_split": {"train": 2}}
    assert m["reject_reasons"] == {"sanity:empty_text": 2}
    assert m["state"] == "partial"  # 1 of 2 units
    assert pq.read_table(tmp_path / "rejected/part-00000.parquet").column("reject_reasons").to_pylist()[0] == [
        "sanity:empty_text"]
    assert verify(tmp_path) == []


def test_manifest_sha256_catches_a_changed_shard(tmp_path):
    w = ShardWriter(tmp_path)
    w.expect(0, 1)
    w.add([row(0, 0)])
    finalize(tmp_path, {}, "h", units_total=1)
    with open(tmp_path / "data/train/part-00000.parquet", "ab") as f:
        f.write(b"x")
    assert verify(tmp_path) == ["sha256 mismatch for data/train/part-00000.parquet"]


def test_required_column_missing_is_named(tmp_path):
    w = ShardWriter(tmp_path)
    w.expect(0, 1)
    bad = row(0, 0)
    bad["modification_text"] = None
    with pytest.raises(ValueError, match="modification_text"):
        w.add([bad])


def test_loads_with_hf_datasets_as_images_and_with_duckdb(tmp_path):
    import datasets
    import duckdb
    from PIL import Image

    w = ShardWriter(tmp_path)
    w.expect(0, 2)
    w.add([row(0, 0), row(0, 1)])
    files = sorted(str(p) for p in tmp_path.glob("data/train/*.parquet"))
    ds = datasets.load_dataset("parquet", data_files=files, split="train", cache_dir=str(tmp_path / "hf"))
    assert isinstance(ds[0]["reference_image"], Image.Image)
    assert ds[0]["neg_text_aligned_image"] is None
    assert ds.features["scores"]["roundtrip"].dtype == "float32"
    got = duckdb.sql(f"select modification_text, scores.roundtrip from '{files[0]}' order by 1").fetchall()
    assert got == [("make it 0", 0.5), ("make it 1", 0.5)]


KILL_WRITER = r"""
import sys, os
sys.path.insert(0, os.getcwd())
from pipeline.shards import ShardWriter
from tests.pipeline.rows import row
w = ShardWriter(sys.argv[1], row_group_size=10, compression="none")
big = os.urandom(3 * 256 * 256)
from tests.pipeline.rows import png
img = png(size=256, noise=big)  # incompressible: writing takes a while
w.expect(0, 4000)
print("ready", flush=True)
w.add([row(0, i, image=img) for i in range(4000)])
"""


def test_writer_killed_mid_shard_leaves_no_final_file(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", KILL_WRITER, str(tmp_path)], stdout=subprocess.PIPE, cwd=os.getcwd())
    assert proc.stdout.readline().strip() == b"ready"
    deadline = time.time() + 120
    tmp_files = []
    while time.time() < deadline and not tmp_files:
        tmp_files = list(tmp_path.rglob(".part-*.tmp-*"))
        time.sleep(0.01)
    assert tmp_files, "the writer never started its temporary shard"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert list(tmp_path.rglob("part-*.parquet")) == []
    assert not list((tmp_path / "_units").glob("*.json"))
    w = ShardWriter(tmp_path)  # a rerun sweeps the leftovers
    assert list(tmp_path.rglob(".part-*")) == [] and w.committed_units() == set()


def test_resume_skips_committed_units(tmp_path):
    w = ShardWriter(tmp_path)
    w.expect(0, 1)
    w.add([row(0, 0)])
    before = (tmp_path / "data/train/part-00000.parquet").stat().st_mtime_ns
    w2 = ShardWriter(tmp_path)
    assert w2.committed_units() == {0}
    assert (tmp_path / "data/train/part-00000.parquet").stat().st_mtime_ns == before
    rec = json.loads((tmp_path / "_units/unit-00000.json").read_text())
    assert rec["rows_in"] == 1 and rec["shards"][0]["rows"] == 1


def test_stage_counts_come_from_the_rows_of_every_committed_unit(tmp_path):
    def rows(unit, reasons):
        return [{**row(unit, i), "reject_reasons": r} for i, r in enumerate(reasons)]

    w = ShardWriter(tmp_path, stages=("a", "b", "c"))
    w.expect(0, 4)
    # a row rejected by a counts there only; later stages still see it and may add reasons
    w.add(rows(0, [[], ["a:x"], ["a:x", "b:y"], ["b:y", "c:z", "b:w"]]))
    w = ShardWriter(tmp_path, stages=("a", "b", "c"))  # a resumed run: unit 0 is committed
    w.expect(1, 2)
    w.add(rows(1, [["c:z"], []]))
    m = finalize(tmp_path, {}, "h", units_total=2, stage_counts={"pool": {"seen": 3}})
    assert m["stages"] == ["a", "b", "c"] and m["stage_counts"]["pool"] == {"seen": 3}
    assert [m["stage_counts"][s] for s in m["stages"]] == [
        {"in": 6, "out": 4, "rejected": 2, "reasons": {"x": 2}},
        {"in": 4, "out": 3, "rejected": 1, "reasons": {"w": 1, "y": 1}},
        {"in": 3, "out": 2, "rejected": 1, "reasons": {"z": 1}}]
    assert m["rows"]["kept"] == 2
    # a unit record from before the writer kept these counts: counted from its rejected rows
    rec = tmp_path / "_units/unit-00000.json"
    rec.write_text(json.dumps({k: v for k, v in json.loads(rec.read_text()).items() if k != "stage_rejections"}))
    assert finalize(tmp_path, {}, "h", units_total=2, stage_counts={"pool": {"seen": 3}}) == m
