"""Seed sets read from files: a CIRR or FashionIQ folder (official layout) or cirforge shards.

The images stay where they are (files, or the shards' image cells) and are decoded a batch at a
time through the model's own preprocessing (any size; no array of every image). Triplets that
cannot be used (a missing key, an image not listed, missing or corrupt) are skipped with their
reason; ``summary()`` counts them, and training records it beside the model.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from pipeline.shapesworld.sets.mtst import SeedSet, shapesworld_seed_set

SHARD_COLUMNS = ["reference_id", "target_id", "modification_text", "reverse_text", "reference_image", "target_image"]


@dataclass
class FileSeedSet(SeedSet):
    """Pairs over images on disk (paths) or in shard cells ({bytes, path}); ``load`` decodes a batch."""

    skipped: list[tuple[str, str]] = field(default_factory=list)  # (which, "reason: detail")
    names: list[str] = field(default_factory=list)  # the dataset's image id per image slot
    source: dict = field(default_factory=dict)  # kind, path, split

    def load(self, indices) -> list[Image.Image]:
        from pipeline.sources import decode_image

        out = []
        for i in indices:
            ref = self.images[i]
            try:
                out.append(decode_image(ref) if isinstance(ref, dict) else Image.open(ref).convert("RGB"))
            except Exception as err:  # noqa: BLE001 - verify() passed but the pixels do not decode
                raise ValueError(f"seed image {_name(ref)}: cannot be decoded ({type(err).__name__}: {err}); "
                                 "remove or replace the file") from None
        return out

    def fingerprint(self) -> str:
        h = hashlib.sha256(json.dumps([_name(r) for r in self.images]).encode())
        h.update(repr(self.pairs).encode())
        return h.hexdigest()[:16]

    def summary(self) -> dict:
        """Counts for the model folder's metadata: triplets used, with reverse texts, skipped by reason."""
        reasons = Counter(why.split(":", 1)[0] for _, why in self.skipped)
        return {**self.source, "triplets": len(self.pairs), "images": len(self.images),
                "reverse_texts": sum(1 for p in self.pairs if p[3]), "skipped": len(self.skipped),
                "skipped_by_reason": dict(sorted(reasons.items())),
                "skipped_examples": [f"{w}: {why}" for w, why in self.skipped[:20]]}


def make_seed_set(data) -> SeedSet:
    """The seed set ``data`` (an ``MTSTDataConfig``) names."""
    if data.kind == "shapesworld":
        return shapesworld_seed_set(data.n_triplets, seed=data.seed, image_size=data.image_size,
                                    max_edits=data.max_edits)
    if data.kind == "shards":
        return shard_seed_set(data.path, data.split, limit=data.limit)
    return benchmark_seed_set(data.kind, data.path, data.split, categories=data.categories, limit=data.limit,
                              read_reverse=data.read_reverse)


def seed_files_key(data) -> str | None:
    """sha256 (16 hex) of the annotation files a file seed set reads (not the images): part of the
    training cache key, so edited captions train anew; None for ShapesWorld (its config is the key)."""
    if data.kind == "shapesworld":
        return None
    from pipeline.cir_reverse import cirr_annotation_dir

    root = Path(data.path)
    if data.kind == "cirr":
        ann = cirr_annotation_dir(root)
        files = [ann / "captions" / f"cap.rc2.{data.split}.json", ann / "image_splits" / f"split.rc2.{data.split}.json"]
        files += [ann / "captions" / f"cirr_{data.split}_modifier_rev_long.json"] if data.read_reverse else []
    elif data.kind == "fashioniq":
        files = sorted((root / "captions").glob(f"cap.*.{data.split}.json")) + \
            sorted((root / "image_splits").glob(f"split.*.{data.split}.json"))
        files += sorted((root / "captions").glob(f"cap_{data.split}_*_rev.json")) if data.read_reverse else []
    else:
        files = [root / "manifest.json"]
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + (f.read_bytes() if f.is_file() else b"<absent>"))
    return h.hexdigest()[:16]


def benchmark_seed_set(kind: str, root: str | Path, split: str = "train", *, categories: list[str] | None = None,
                       limit: int | None = None, read_reverse: bool = False) -> FileSeedSet:
    """The annotated triplets of a CIRR or FashionIQ folder; with ``read_reverse``, the reverse texts
    of the authors' ``*_rev`` files where they are there (``pipeline/cir_reverse.py``)."""
    from pipeline.cir_reverse import read_reverse_texts
    from pipeline.sources.cir_datasets import CirrSource, FashionIQSource

    src = CirrSource(root, split) if kind == "cirr" else FashionIQSource(root, split, categories=categories)
    listed = src.images()
    triplets = src.triplets()
    reverse, skipped = read_reverse_texts(kind, root, split, getattr(src, "categories", None)) if read_reverse \
        else ({}, [])
    skipped = list(src.skipped_triplets) + skipped
    out = FileSeedSet(images=[], pairs=[], skipped=skipped, source={"kind": kind, "path": str(root), "split": split})
    problems: dict[str, str | None] = {}
    slots: dict[str, int] = {}
    for t in triplets:
        ids = (t["reference_id"], t["target_id"])
        for i in ids:
            if i not in problems:
                problems[i] = _file_problem(listed[i][0])
        bad = [f"{i}: {problems[i]}" for i in ids if problems[i]]
        if bad:
            skipped.append((f"{ids[0]}->{ids[1]}", f"bad_image: {bad[0]}"))
            continue
        if not t["modification_text"]:
            skipped.append((f"{ids[0]}->{ids[1]}", "empty_text: the caption is empty"))
            continue
        _add(out, slots, ids, (listed[i][0] for i in ids), t["modification_text"], reverse.get(ids))
        if limit and len(out.pairs) >= limit:
            break
    return _checked(out)


def shard_seed_set(root: str | Path, split: str = "train", *, limit: int | None = None) -> FileSeedSet:
    """The kept rows of a cirforge dataset's ``split`` as seed triplets (texts and images as written)."""
    import pyarrow.parquet as pq

    from pipeline.shards import MANIFEST, load_manifest, shard_path
    from pipeline.sources import check_image_bytes

    root = Path(root)
    if not (root / MANIFEST).is_file():
        raise ValueError(f"data.path={str(root)!r}: no {MANIFEST}; give a dataset folder written by cirforge")
    out = FileSeedSet(images=[], pairs=[], source={"kind": "shards", "path": str(root), "split": split})
    problems: dict[str, str | None] = {}
    slots: dict[str, int] = {}
    for s in load_manifest(root)["shards"]:
        if s["split"] != split:
            continue
        path = shard_path(root, s["path"])
        cols = [c for c in SHARD_COLUMNS if c in pq.read_schema(path).names]
        for row in pq.read_table(path, columns=cols).to_pylist():
            ids = (row["reference_id"], row["target_id"])
            cells = (row["reference_image"], row["target_image"])
            for i, cell in zip(ids, cells):
                if i not in problems:
                    problems[i] = (check_image_bytes(cell["bytes"]) if cell.get("bytes") is not None
                                   else _file_problem(Path(cell["path"]) if cell.get("path") else None))
            bad = [f"{i}: {problems[i]}" for i in ids if problems[i]]
            if bad or not row.get("modification_text"):
                out.skipped.append((f"{ids[0]}->{ids[1]}", f"bad_image: {bad[0]}" if bad else "empty_text"))
                continue
            _add(out, slots, ids, cells, row["modification_text"], row.get("reverse_text"))
            if limit and len(out.pairs) >= limit:
                return _checked(out)
    return _checked(out)


def _add(out: FileSeedSet, slots: dict, ids, refs, text: str, reverse: str | None) -> None:
    for i, ref in zip(ids, refs):
        if i not in slots:
            slots[i] = len(out.images)
            out.images.append(ref)
            out.names.append(i)
    out.pairs.append((slots[ids[0]], slots[ids[1]], text, reverse or None))


def _checked(out: FileSeedSet) -> FileSeedSet:
    if not out.pairs:
        why = f"; skipped: {out.skipped[0][0]}: {out.skipped[0][1]}" if out.skipped else ""
        raise ValueError(f"seed set {out.source['kind']} at {out.source['path']!r} (split "
                         f"{out.source['split']!r}) has no usable triplet{why}")
    return out


def _file_problem(path: Path | None) -> str | None:
    """None when Pillow opens and verifies the file (headers and, for PNG, checksums; cheap, no decode)."""
    if path is None or not Path(path).is_file():
        return "missing: image file not found"
    try:
        with Image.open(path) as im:
            im.verify()
    except Exception as err:  # noqa: BLE001 - corrupt files raise OSError, SyntaxError, struct.error, ...
        return f"corrupt: {type(err).__name__}: {err}"
    return None


def _name(ref) -> str:
    return str(ref.get("path") or hashlib.sha256(ref["bytes"]).hexdigest()[:16]) if isinstance(ref, dict) else str(ref)
