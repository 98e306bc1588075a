"""Export a cirforge dataset to the CIRR or FashionIQ layout (images + JSON), which existing CIR
trainers read, and which ``make_source(kind="cirr" | "fashioniq")`` imports back.

Only kept rows are exported (``data/<split>/``, found through the manifest, whose shard paths are
checked). Each image is written once per split folder under a file-safe name: the image id when it
is already one (``[A-Za-z0-9][A-Za-z0-9._-]*``), else ``img-<sha256 of the id, 16 hex>``;
``cirforge_export.json`` maps every name back to its image id. The export is written to a temporary
folder and renamed into place, so ``--out`` is either absent or complete. Rows with a reverse text
also go to the MTST authors' reverse files (``pipeline/cir_reverse.py``), one per split.

CIRR (the official layout, Cuberick-Orion/CIRR): ``cirr/captions/cap.rc2.<split>.json``,
``cirr/image_splits/split.rc2.<split>.json`` and images at ``<dir>/<name>.<ext>`` beside ``cirr/``
(``dir`` = train, dev, test1), which CLIP4Cir-style loaders open as ``dataset_root / split_map[name]``
(PNG and JPEG bytes as they are, others re-encoded as PNG). Splits: train -> train, val -> val
(images in dev/), test -> test1; unlike the official test1, ``target_hard`` is given. ``img_set``
groups a reference with its targets in that split (the CIRR subset metric's candidates). Reverse
texts: ``cirr/captions/cirr_<split>_modifier_rev_long.json``.

FashionIQ: ``captions/cap.<category>.<split>.json`` (``candidate``, ``target``, ``captions``),
``image_splits/split.<category>.<split>.json`` and ``images/<name>.png``: every image as PNG (JPEG
re-encoded, lossless from its decoded pixels), since the official loaders open ``<name>.png``.
FashionIQ has two captions per pair; cirforge has one text, written twice (the importer reads it
back once). Reverse texts: ``captions/cap_<split>_<category>_rev.json``.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Iterator

import pyarrow.parquet as pq
from PIL import Image

from pipeline.cir_reverse import REVERSE_KEY, cirr_reverse_file, fashioniq_reverse_file, write_jsonl
from pipeline.shards import MANIFEST, load_manifest, shard_path

FORMATS = ("cirr", "fashioniq")
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
CIRR_SPLITS = {"train": ("train", "train"), "val": ("val", "dev"), "test": ("test1", "test1")}
FIQ_SPLITS = {"train": "train", "val": "val", "test": "test"}
COLUMNS = ["reference_id", "target_id", "modification_text", "reverse_text", "reference_image", "target_image", "split"]
EXPORT_FILE = "cirforge_export.json"


def image_name(image_id: str) -> str:
    """A file-safe name for an image id (the id itself when it already is one)."""
    if SAFE_NAME.match(image_id):
        return image_id
    return "img-" + hashlib.sha256(image_id.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _image_file(cell: dict, png_only: bool = False) -> tuple[bytes, str]:
    """(bytes, extension) to write for an HF Image cell: PNG (and JPEG unless ``png_only``) as they are,
    others as PNG."""
    data = cell.get("bytes")
    if data is None:
        path = cell.get("path")
        if not path:
            raise ValueError("an image cell has neither bytes nor a path")
        data = Path(path).read_bytes()
    with Image.open(io.BytesIO(data)) as im:
        fmt = im.format
        if fmt == "PNG":
            return data, ".png"
        if fmt == "JPEG" and not png_only:
            return data, ".jpg"
        from pipeline.sources import decode_image, png_bytes

        return png_bytes(decode_image(data)), ".png"


def read_triplets(dataset: Path, splits: tuple[str, ...] = ("train", "val", "test")) -> Iterator[dict]:
    """Kept rows of a cirforge dataset (the columns an export needs), shard by shard in path order."""
    dataset = Path(dataset)
    if not (dataset / MANIFEST).is_file():
        raise FileNotFoundError(f"{dataset}: no {MANIFEST}; pass a dataset folder that `cirforge generate` "
                                "finished (e.g. out/shapesworld-demo)")
    manifest = load_manifest(dataset)
    for s in manifest["shards"]:
        if s["split"] not in splits:
            continue
        pf = pq.ParquetFile(shard_path(dataset, s["path"]))
        for batch in pf.iter_batches(batch_size=256, columns=COLUMNS):
            yield from batch.to_pylist()


class _Writer:
    """Writes each (folder, image) once, checks that names stay one-to-one with ids."""

    def __init__(self, root: Path, png_only: bool = False):
        self.root = root
        self.png_only = png_only
        self.files: dict[tuple[str, str], str] = {}  # (folder, image_id) -> relative path
        self.names: dict[str, str] = {}  # name -> image_id

    def image(self, folder: str, image_id: str, cell: dict) -> tuple[str, str]:
        name = image_name(image_id)
        if self.names.setdefault(name, image_id) != image_id:
            raise ValueError(f"image ids {self.names[name]!r} and {image_id!r} map to the same file name {name!r}")
        key = (folder, image_id)
        if key not in self.files:
            data, ext = _image_file(cell, self.png_only)
            rel = f"{folder}/{name}{ext}"
            (self.root / folder).mkdir(parents=True, exist_ok=True)
            (self.root / rel).write_bytes(data)
            self.files[key] = rel
        return name, self.files[key]


def _dump(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1, ensure_ascii=False) + "\n")


def _by_split(dataset: Path) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = defaultdict(list)
    for r in read_triplets(dataset):
        out[r["split"]].append(r)
    for rows in out.values():
        rows.sort(key=lambda r: (r["reference_id"], r["target_id"]))
    return dict(sorted(out.items()))


def _export_cirr(dataset: Path, root: Path) -> dict:
    w = _Writer(root)
    ann = root / "cirr"
    counts = {}
    for split, rows in _by_split(dataset).items():
        cirr_split, folder = CIRR_SPLITS[split]
        split_map: dict[str, str] = {}
        members: dict[str, list[str]] = defaultdict(list)
        caps, reverse = [], []
        for pairid, r in enumerate(rows):
            ref, ref_rel = w.image(folder, r["reference_id"], r["reference_image"])
            tgt, tgt_rel = w.image(folder, r["target_id"], r["target_image"])
            split_map[ref], split_map[tgt] = f"./{ref_rel}", f"./{tgt_rel}"
            if ref not in members[ref]:
                members[ref].append(ref)
            if tgt not in members[ref]:
                members[ref].append(tgt)
            caps.append({"pairid": pairid, "reference": ref, "target_hard": tgt, "target_soft": {tgt: 1.0},
                         "caption": r["modification_text"], "img_set": {"id": None, "members": members[ref]}})
            if r.get("reverse_text"):
                reverse.append((caps[-1], r["reverse_text"]))
        set_ids = {ref: i for i, ref in enumerate(sorted(members))}
        for c in caps:
            c["img_set"]["id"] = set_ids[c["reference"]]
        _dump(ann / "captions" / f"cap.rc2.{cirr_split}.json", caps)
        _dump(ann / "image_splits" / f"split.rc2.{cirr_split}.json", dict(sorted(split_map.items())))
        if reverse:
            write_jsonl(cirr_reverse_file(root, cirr_split), [{**c, REVERSE_KEY: t} for c, t in reverse])
        counts[cirr_split] = {"triplets": len(caps), "images": len(split_map), "reverse_texts": len(reverse)}
    return {"splits": counts, "names": dict(sorted(w.names.items()))}


def _export_fashioniq(dataset: Path, root: Path, category: str) -> dict:
    if not SAFE_NAME.match(category):
        raise ValueError(f"category {category!r}: use letters, digits, '.', '_' or '-' (e.g. dress)")
    w = _Writer(root, png_only=True)
    counts = {}
    for split, rows in _by_split(dataset).items():
        fiq_split = FIQ_SPLITS[split]
        names: dict[str, None] = {}
        caps, reverse = [], []
        for r in rows:
            ref, _ = w.image("images", r["reference_id"], r["reference_image"])
            tgt, _ = w.image("images", r["target_id"], r["target_image"])
            names[ref] = names[tgt] = None
            caps.append({"candidate": ref, "target": tgt, "captions": [r["modification_text"]] * 2})
            if r.get("reverse_text"):  # the authors' loader opens images/<candidate> as it is: name.png
                reverse.append({**caps[-1], "candidate": f"{ref}.png", "target": f"{tgt}.png",
                                REVERSE_KEY: r["reverse_text"]})
        _dump(root / "captions" / f"cap.{category}.{fiq_split}.json", caps)
        _dump(root / "image_splits" / f"split.{category}.{fiq_split}.json", sorted(names))
        if reverse:
            write_jsonl(fashioniq_reverse_file(root, fiq_split, category), reverse)
        counts[fiq_split] = {"triplets": len(caps), "images": len(names), "reverse_texts": len(reverse)}
    return {"category": category, "splits": counts, "names": dict(sorted(w.names.items()))}


def export_dataset(dataset: str | Path, fmt: str, out: str | Path, category: str = "cirforge",
                   overwrite: bool = False) -> dict:
    """Write ``dataset`` in the ``fmt`` layout to the folder ``out``; returns the export record."""
    dataset, out = Path(dataset), Path(out)
    if fmt not in FORMATS:
        raise ValueError(f"--format {fmt!r}: allowed are {', '.join(FORMATS)}")
    nonempty = any(out.iterdir()) if out.is_dir() else out.exists()
    if nonempty and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty: choose a new --out folder or pass --overwrite")
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        record = _export_cirr(dataset, tmp) if fmt == "cirr" else _export_fashioniq(dataset, tmp, category)
        if not record["splits"]:
            raise ValueError(f"{dataset}: no kept triplets to export")
        manifest = load_manifest(dataset)
        record = {"format": fmt, "dataset": manifest.get("name"), "config_hash": manifest.get("config_hash"),
                  "contract_version": manifest.get("contract_version"), **record}
        _dump(tmp / EXPORT_FILE, record)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return record
