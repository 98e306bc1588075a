"""Look at a written dataset: counts per split, the schema, and a PNG grid of sample triplets."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow.dataset as pads
import pyarrow.parquet as pq
from PIL import Image

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


def _decode(cell) -> Image.Image | None:
    if not cell or not cell.get("bytes"):
        if cell and cell.get("path") and Path(cell["path"]).is_file():
            return Image.open(cell["path"]).convert("RGB")
        return None
    return Image.open(io.BytesIO(cell["bytes"])).convert("RGB")


def sample_grid(root: Path, out_png: Path, n: int = 8, split: str = "train") -> Path:
    """Save a grid: one row per triplet (reference, target, both negatives) with its texts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    root = Path(root)
    files = sorted((root / "data" / split).glob("*.parquet")) or sorted(root.glob("data/*/*.parquet"))
    if not files:
        raise FileNotFoundError(f"{root}: no shards under data/ to sample from")
    cols = ["reference_image", "target_image", "neg_text_aligned_image", "neg_image_aligned_image",
            "modification_text", "reverse_text", "neg_text_aligned_source", "neg_image_aligned_source"]
    table = pads.dataset(files, format="parquet").head(n, columns=cols)
    rows = table.to_pylist()
    titles = ["reference", "target", "text-aligned neg", "image-aligned neg"]
    fig, axes = plt.subplots(len(rows), 4, figsize=(10, 2.6 * len(rows)), squeeze=False)
    for i, r in enumerate(rows):
        for j, c in enumerate(cols[:4]):
            ax = axes[i][j]
            ax.axis("off")
            img = _decode(r[c])
            if img is not None:
                ax.imshow(img)
            else:
                ax.text(0.5, 0.5, "(none)", ha="center", va="center", fontsize=8)
            if i == 0:
                ax.set_title(titles[j], fontsize=9)
        axes[i][0].text(0, -0.08, f"fwd: {r['modification_text']}\nrev: {r['reverse_text'] or '-'}",
                        transform=axes[i][0].transAxes, fontsize=7, va="top", ha="left")
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=90)
    plt.close(fig)
    return out_png
