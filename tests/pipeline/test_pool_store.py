"""The pool on disk: written once from a streaming source, read back by id, the same rows as the source."""
from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image

from pipeline.config import SourceConfig
from pipeline.pool_store import PoolStore, pool_dir
from pipeline.sources import FolderSource


def png(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "images"
    for i in range(12):
        (root / f"cat{i % 3}").mkdir(parents=True, exist_ok=True)
        (root / f"cat{i % 3}" / f"{i:02d}.png").write_bytes(png(i))
    (root / "cat0" / "bad.png").write_bytes(b"not an image")
    return root


class Once:
    """A source factory that fails when called twice: a rerun must not read the inputs again."""

    def __init__(self, root):
        self.root, self.calls = root, 0

    def __call__(self):
        self.calls += 1
        assert self.calls == 1, "the pool was built twice"
        return FolderSource(self.root)


def test_the_store_holds_the_sources_rows_and_its_accounting(tmp_path, folder):
    want = {r["image_id"]: r for r in FolderSource(folder)}
    make = Once(folder)
    store = PoolStore.ensure(tmp_path / "pool", make)
    assert store.ids == sorted(want) and len(store) == 12
    assert store.labels == [want[i]["label"] for i in store.ids]
    assert (store.seen, [i for i, _ in store.skipped]) == (13, ["cat0/bad.png"])
    got = store.fetch(["cat1/07.png", "cat0/00.png"])
    assert got["cat1/07.png"] == want["cat1/07.png"] and got["cat0/00.png"] == want["cat0/00.png"]
    assert [r for b in store.batches(5) for r in b] == [want[i] for i in store.ids]
    again = PoolStore.ensure(tmp_path / "pool", make)  # reopened, the source not read
    assert again.ids == store.ids and again.skipped == store.skipped
    with pytest.raises(KeyError):
        store.locate(["nope.png"])


def test_a_changed_folder_is_a_new_pool(tmp_path, folder):
    cfg = SourceConfig(kind="folder", path=folder)
    before = pool_dir(tmp_path, cfg, 0)
    assert pool_dir(tmp_path, cfg, 0) == before
    (folder / "cat2" / "new.png").write_bytes(png(99))
    assert pool_dir(tmp_path, cfg, 0) != before
    os.utime(folder / "cat2" / "new.png", ns=(1, 1))
    assert pool_dir(tmp_path, cfg, 0) != before


def test_job_rows_come_from_the_store_unit_by_unit(tmp_path):
    """unit_rows (driver) and UnitRows (what a worker runs) give the same rows, images included."""
    from pipeline.job import generate
    from pipeline.job.config import load_config
    from pipeline.job.units import UnitRows, units_file, write_units
    from tests.flows.small import small_config

    cfg = load_config(small_config(tmp_path, families=6, rows_per_unit=5))
    plan = generate.plan(cfg)
    todo = [1, 3]
    write_units(units_file(cfg), plan.units, todo, plan.pool)
    make = UnitRows(cfg, units_file(cfg), todo, plan.pool.images_bin, plan.generator_id)
    for u in todo:
        rows = make(u)
        assert rows == generate.unit_rows(cfg, plan, u)
        assert all(r["reference_image"]["bytes"] and r["reference_scene"] for r in rows)
