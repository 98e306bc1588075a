"""A small ShapesWorld run config for end-to-end tests (label mining: no model to train)."""
from pathlib import Path

import yaml


def small_config(tmp_path: Path, name: str = "small", families: int = 24, rows_per_unit: int = 16, **extra) -> Path:
    cfg = {
        "name": name, "out_dir": str(tmp_path / "out"), "cache_dir": str(tmp_path / "cache"), "seed": 5,
        "source": {"kind": "shapesworld", "shapesworld": {"image_size": 32, "families": families,
                                                          "variants_per_family": 4}},
        "mining": {"strategies": ["label"], "k": 3, "near_dup": 1.0},
        "shards": {"rows_per_unit": rows_per_unit, "batch_size": 8},
        "splits": {"train": 0.6, "val": 0.2, "test": 0.2},
        "generator": {"kind": "annotator"},
        "runtime": {"num_cpus": 2, "progress": False},
        **extra,
    }
    path = tmp_path / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg))
    return path


def assert_stage_counts_add_up(manifest: dict, chain: list[str]) -> None:
    """The manifest counts rows through ``chain`` in order: in = out + rejected, one stage's out the
    next one's in, from the mined pairs down to the kept rows."""
    sc, rows = manifest["stage_counts"], manifest["rows"]
    assert manifest["stages"] == chain
    assert sc[chain[0]]["in"] == rows["in"] == sc["mining"]["pairs"]
    for a, b in zip(chain, chain[1:] + [None]):
        c = sc[a]
        assert c["in"] == c["out"] + c["rejected"] and c["rejected"] <= sum(c["reasons"].values())
        assert c["out"] == (sc[b]["in"] if b else rows["kept"])


def triplet_ids(dataset: Path) -> list[str]:
    import pyarrow.dataset as pads

    parts = [p for p in (dataset / "data", dataset / "rejected") if p.is_dir()]
    ids = []
    for p in parts:
        ids += pads.dataset(p, format="parquet").to_table(columns=["triplet_id"]).column("triplet_id").to_pylist()
    return sorted(ids)


def kept_ids(dataset: Path) -> list[str]:
    import pyarrow.dataset as pads

    return sorted(pads.dataset(dataset / "data", format="parquet").to_table(columns=["triplet_id"])
                  .column("triplet_id").to_pylist())
