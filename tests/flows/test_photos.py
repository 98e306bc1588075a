"""Photos on the production path: the default Ray executor and the Prefect flow give the local
executor's rows, with tiny real-architecture checkpoints (CLIP, an MTST folder in the InstructBLIP
layout, InstructPix2Pix). Ray Data hands all-None columns (the ShapesWorld scene graphs of photo
rows) over as float NaN: they must stay missing, not pass for scene graphs."""
from __future__ import annotations

import hashlib

import pyarrow.dataset as pads
import pytest
import yaml

from flows.generate import generate_flow
from pipeline.job.config import load_config
from pipeline.job.generate import generate
from tests.checkpoints import photo_folder, save_tiny_clip, save_tiny_ip2p, save_tiny_mtst

pytestmark = pytest.mark.slow

COMPARED = ["triplet_id", "reference_id", "target_id", "split", "modification_text", "reverse_text", "editor",
            "neg_text_aligned_source", "neg_image_aligned_source", "neg_text_aligned_instruction",
            "neg_image_aligned_instruction", "neg_text_aligned_image", "neg_image_aligned_image"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    import torch

    d = tmp_path_factory.mktemp("photo-run")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convs on a shared 2-core machine: OpenMP spinning costs more than it gives
    yield {"photos": photo_folder(d / "photos"), "clip": save_tiny_clip(d / "clip"),
           "mtst": save_tiny_mtst(d / "mtst"), "ip2p": save_tiny_ip2p(d / "ip2p"), "root": d}
    torch.set_num_threads(threads)


def photo_config(setup, name: str):
    cfg = {
        "name": name, "out_dir": str(setup["root"] / "out"), "cache_dir": str(setup["root"] / "cache"), "seed": 3,
        "source": {"kind": "folder", "path": str(setup["photos"])},
        "embedder": {"checkpoint": str(setup["clip"]), "device": "cpu"},
        "mining": {"strategies": ["label"], "k": 2, "near_dup": 1.0},
        "splits": {"train": 0.6, "val": 0.2, "test": 0.2},
        "shards": {"rows_per_unit": 8, "batch_size": 8},
        "generator": {"kind": "mtst", "mtst": {"model": {"pretrained": str(setup["mtst"])},
                                               "infer": {"device": "cpu", "max_new_tokens": 3, "batch_size": 8}}},
        "negatives": {"editor": "instruct_pix2pix", "max_candidates": 8,
                      "instruct_pix2pix": {"model": str(setup["ip2p"]), "device": "cpu", "dtype": "float32",
                                           "resolution": 64, "steps": 2, "batch_size": 4}},
        # a calibrated combined text score (filters/combined.py) in the chain: p(bad) from the CLIP direction
        "filters": {"combined": {"weights": {"clip_direction": -8.0}, "center": {"clip_direction": 0.0},
                                 "bias": 0.0, "max_p_bad": 0.5}},
        "runtime": {"num_cpus": 2, "progress": False},
    }
    path = setup["root"] / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def rows_of(dataset) -> dict[str, dict]:
    """Every row (kept and rejected) by triplet id; images as sha256 of their bytes."""
    files = sorted(str(p) for p in dataset.glob("*/**/part-*.parquet"))
    table = pads.dataset(files, format="parquet").to_table(columns=COMPARED + ["reject_reasons"]).to_pylist()
    for r in table:
        for c in ("neg_text_aligned_image", "neg_image_aligned_image"):
            r[c] = r[c] and hashlib.sha256(r[c]["bytes"]).hexdigest()
        r["reject_reasons"] = sorted(r["reject_reasons"] or [])
    return {r["triplet_id"]: r for r in table}


def combined_scores(dataset) -> int:
    """How many rows carry the combined text score."""
    files = sorted(str(p) for p in dataset.glob("*/**/part-*.parquet"))
    scores = pads.dataset(files, format="parquet").to_table(columns=["scores"]).to_pylist()
    return sum((r["scores"] or {}).get("combined_p_bad") is not None for r in scores)


def test_photos_give_the_same_rows_on_ray_through_the_flow_and_locally(setup, ray_local, monkeypatch):
    monkeypatch.setenv("PREFECT_HOME", str(setup["root"] / "prefect"))
    local = generate(load_config(photo_config(setup, "local")), executor="local", progress=False)
    on_ray = generate(load_config(photo_config(setup, "ray")), executor="ray", progress=False)
    flow = generate_flow(str(photo_config(setup, "flow")), executor="ray")
    out = setup["root"] / "out"
    want = rows_of(out / "local")
    assert len(want) == local["rows"]["in"] > 0
    assert local["stage_counts"]["pool"]["kept"] == 12
    # the photo path ran: texts from the MTST model, negatives mined or edited, CLIP filters scored
    assert any(r["modification_text"] for r in want.values())
    assert any(r["neg_text_aligned_source"] or r["neg_image_aligned_source"] for r in want.values())
    assert combined_scores(out / "local") > 0  # the combined score judged photo rows
    for manifest, name in ((on_ray, "ray"), (flow, "flow")):
        assert manifest["state"] == "complete"
        assert manifest["rows"] == local["rows"] and manifest["reject_reasons"] == local["reject_reasons"]
        assert rows_of(out / name) == want, name
