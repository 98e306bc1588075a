"""The generation flow end to end on ShapesWorld through Ray: shards, manifest, card, resume."""
import json

import pyarrow.parquet as pq

from flows.generate import generate_flow
from pipeline.job.config import load_config
from pipeline.job.generate import generate, plan
from pipeline.shapesworld import Scene, apply_text
from tests.flows.small import assert_stage_counts_add_up, small_config, triplet_ids


def test_flow_through_ray_writes_a_dataset_that_adds_up(tmp_path, ray_local, monkeypatch):
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    path = small_config(tmp_path)
    manifest = generate_flow(str(path), executor="ray")
    root = tmp_path / "out" / "small"
    assert manifest["state"] == "complete"
    rows = manifest["rows"]
    assert rows["in"] == rows["kept"] + rows["rejected"] > 0
    assert set(rows["per_split"]) >= {"train", "val", "test"}
    assert manifest["stage_counts"]["pool"]["kept"] == 24 * 5
    assert_stage_counts_add_up(manifest, ["annotator", "negatives", "text_sanity", "roundtrip",
                                          "text_image_consistency", "clip_direction", "image_similarity", "duplicates"])
    # every kept text is ground truth: the parser turns the reference into the target
    table = pq.ParquetFile(next((root / "data" / "train").glob("*.parquet"))).read()
    for r in table.select(["modification_text", "reverse_text", "reference_scene", "target_scene"]).to_pylist():
        ref, tgt = Scene.from_json(r["reference_scene"]), Scene.from_json(r["target_scene"])
        assert apply_text(r["modification_text"], ref) == tgt
        assert apply_text(r["reverse_text"], tgt) == ref
    card = (root / "README.md").read_text()
    assert "data/train/*.parquet" in card and "complete" in card

    # a second run writes no new rows and no new shards
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*.parquet")}
    again = generate_flow(str(path), executor="ray")
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*.parquet")} == before
    assert again["rows"] == rows and again["stage_counts"] == manifest["stage_counts"]  # from every committed unit


def test_local_executor_gives_the_same_rows_as_ray(tmp_path, ray_local):
    ray_cfg = load_config(small_config(tmp_path, name="viaray", families=10))
    local_cfg = load_config(small_config(tmp_path, name="vialocal", families=10))
    via_ray = generate(ray_cfg, executor="ray", progress=False)
    via_local = generate(local_cfg, executor="local", progress=False)
    assert triplet_ids(ray_cfg.dataset_dir) == triplet_ids(local_cfg.dataset_dir)
    assert via_ray["stage_counts"] == via_local["stage_counts"]


def test_same_config_same_plan_and_units(tmp_path):
    cfg = load_config(small_config(tmp_path, families=8))
    a, b = plan(cfg), plan(cfg)
    assert [(p.reference_id, p.target_id) for p in a.pairs] == [(p.reference_id, p.target_id) for p in b.pairs]
    assert len(a.units) == len(b.units) and a.units[0] == b.units[0]


def test_a_folder_from_another_config_is_refused(tmp_path):
    from pipeline.job.generate import DatasetMismatch

    cfg = load_config(small_config(tmp_path, families=4))
    generate(cfg, executor="local", progress=False)
    other = cfg.model_copy(update={"seed": 99})
    try:
        generate(other, executor="local", progress=False)
    except DatasetMismatch as err:
        assert "another" in str(err) or "config" in str(err)
    else:
        raise AssertionError("a second config wrote into the same dataset folder")
    assert json.loads((cfg.dataset_dir / "manifest.json").read_text())["config_hash"] == cfg.config_hash()


def test_a_complete_dataset_reruns_in_seconds(tmp_path, monkeypatch):
    import time

    from pipeline.job import generate as steps

    cfg = load_config(small_config(tmp_path, families=4))
    first = generate(cfg, executor="local", progress=False)

    def no_work(*a, **k):
        raise AssertionError("a complete dataset must not be planned, mined or run again")

    monkeypatch.setattr(steps, "plan", no_work)
    start = time.monotonic()
    assert generate(cfg, executor="ray", progress=False) == first
    assert time.monotonic() - start < 5
    # a unit record gone: the dataset is no longer complete, and the run does the work
    next((cfg.dataset_dir / "_units").glob("unit-*.json")).unlink()
    assert steps.complete_manifest(cfg) is None
