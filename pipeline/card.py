"""The dataset card (README.md with the HF YAML header) written beside the shards."""
from __future__ import annotations

from pathlib import Path

from pipeline.schema import COLUMNS, CONTRACT_VERSION
from pipeline.shards import atomic_write_bytes


def write_card(root: Path, manifest: dict) -> Path:
    """Write ``<root>/README.md`` from the manifest: splits for ``load_dataset``, counts, columns."""
    root = Path(root)
    splits = list(manifest["rows"]["per_split"])
    yaml_splits = "\n".join(f"      - split: {s}\n        path: data/{s}/*.parquet" for s in splits)
    counts = "\n".join(f"| {s} | {n} |" for s, n in [*manifest["rows"]["per_split"].items(),
                                                       ("rejected", manifest["rows"]["rejected"])])
    reasons = "\n".join(f"| `{r}` | {n} |" for r, n in manifest["reject_reasons"].items()) or "| (none) | 0 |"
    cols = "\n".join(f"| `{n}` | {t} | {d} |" for n, t, _, d in COLUMNS)
    text = f"""---
configs:
  - config_name: default
    data_files:
{yaml_splits}
tags:
  - composed-image-retrieval
  - synthetic
---

# {manifest['name']}

Synthetic composed-image-retrieval triplets written by cirforge {manifest['pipeline_version']}
(shard contract v{CONTRACT_VERSION}). State: **{manifest['state']}**
({manifest['units_committed']}/{manifest['units_total']} units). Config hash `{manifest['config_hash']}`;
the resolved config is in `manifest.json`.

```python
from datasets import load_dataset
ds = load_dataset("parquet", data_dir="{root.name}/data")  # image columns decode to PIL images
```

## Rows

| split | rows |
|---|---|
{counts}

Rows in: {manifest['rows']['in']}; kept: {manifest['rows']['kept']}; rejected: {manifest['rows']['rejected']}
(rejected rows, with their reasons, are in `rejected/`).

| rejection reason | rows |
|---|---|
{reasons}

## Columns

| column | type | meaning |
|---|---|---|
{cols}
"""
    path = root / "README.md"
    atomic_write_bytes(path, text.encode())
    return path
