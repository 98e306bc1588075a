"""Look at a written dataset: counts per split, the schema, and a PNG grid of sample triplets."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow.dataset as pads
import pyarrow.parquet as pq

from pipeline.samples_figure import SAMPLE_COLUMNS, draw_samples
from pipeline.shards import MANIFEST


def _check_dataset(root: Path) -> None:
    if not (root / MANIFEST).is_file() and not (root / "data").is_dir():
        raise FileNotFoundError(f"{root} is not a cirforge dataset (no manifest.json, no data/): "
                                "pass the folder `cirforge generate` wrote, e.g. out/shapesworld-demo")


def summary(root: Path) -> dict:
    """Counts per split (read from the shards themselves) and the manifest's state."""
    root = Path(root)
    _check_dataset(root)
    counts = {}
    for split_dir in sorted((root / "data").glob("*")):
        files = sorted(split_dir.glob("*.parquet"))
        counts[split_dir.name] = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    rej = sorted((root / "rejected").glob("*.parquet"))
    counts["rejected"] = sum(pq.ParquetFile(f).metadata.num_rows for f in rej)
    manifest = json.loads((root / MANIFEST).read_text()) if (root / MANIFEST).is_file() else {}
    return {"counts": counts, "state": manifest.get("state", "no manifest"),
            "reject_reasons": manifest.get("reject_reasons", {}), "stage_counts": manifest.get("stage_counts", {})}


def schema_text(root: Path) -> str:
    files = sorted(Path(root).glob("data/*/*.parquet"))
    if not files:
        return "(no kept shards)"
    return str(pq.read_schema(files[0]).remove_metadata())


def sample_grid(root: Path, out_png: Path, n: int = 8, split: str = "train") -> Path:
    """Save the sample figure (pipeline.samples_figure) of the first ``n`` kept triplets of ``split``."""
    root = Path(root)
    files = sorted((root / "data" / split).glob("*.parquet")) or sorted(root.glob("data/*/*.parquet"))
    if not files:
        raise FileNotFoundError(f"{root}: no shards under data/ to sample from")
    dataset = pads.dataset(files, format="parquet")
    cols = [c for c in SAMPLE_COLUMNS if c in dataset.schema.names]
    return draw_samples(dataset.head(n, columns=cols).to_pylist(), out_png)
