"""CIRR in its official layout (Cuberick-Orion/CIRR), as CLIP4Cir / SPRC / MTST read it.

``ROOT/cirr/captions/cap.rc2.<split>.json`` and ``ROOT/cirr/image_splits/split.rc2.<split>.json``
(name -> ``./train/<k>/<name>.png``, relative to ROOT, else to ``ROOT/img_raw``); the annotation
folders may also sit directly in ROOT (the repository clone, a ``cirforge export``). Splits: train,
val, test1 (``test`` means test1). PTHA reverse texts: ``cirr_train_modifier_rev_long.json`` beside
the captions (JSON lines; the record's ``modifier_generated``), read when present.
"""
from __future__ import annotations

from pathlib import Path

from trainers.benchmarks.common import (BenchQuery, BenchSplit, _read_json, _records, image_file, keep_query,
                                        read_json_or_lines)

SPLITS = {"train": "train", "val": "val", "test": "test1", "test1": "test1"}
REVERSE_FILES = {"train": "cirr_train_modifier_rev_long.json"}


def annotation_dir(root: Path) -> Path:
    """The folder holding ``captions/`` and ``image_splits/``."""
    return root / "cirr" if (root / "cirr" / "captions").is_dir() else root


def check(root: str | Path, split: str) -> None:
    """Fail at once, naming the file, when ``root`` has no CIRR ``split``."""
    split = SPLITS.get(split, split)
    ann = annotation_dir(Path(root))
    for f in (ann / "captions" / f"cap.rc2.{split}.json", ann / "image_splits" / f"split.rc2.{split}.json"):
        if not f.is_file():
            raise FileNotFoundError(f"cirr: {f} not found: is {root} a CIRR folder (cirr/captions, cirr/image_splits)?")


def _reverse_texts(ann: Path, split: str, skipped: list) -> tuple[dict, Path | None]:
    path = ann / "captions" / REVERSE_FILES.get(split, f"cirr_{split}_modifier_rev_long.json")
    if not path.is_file():
        return {}, None
    out = {}
    for _, rec in _records(read_json_or_lines(path, "cirr reverse texts"), ("reference", "modifier_generated"),
                           path, skipped):
        for key in _keys(rec):
            out[key] = rec["modifier_generated"]
    return out, path


def _keys(rec: dict) -> list:
    # The authors' file repeats the caption records: match on pairid, else on the triplet itself.
    triplet = (rec.get("reference"), rec.get("target_hard"), rec.get("caption"))
    return [("pairid", rec["pairid"]), triplet] if "pairid" in rec else [triplet]


def read(root: str | Path, split: str = "val") -> BenchSplit:
    """The split's images (every listed file that exists) and its queries (test1: no targets)."""
    root, split = Path(root), SPLITS.get(split, split)
    check(root, split)
    ann = annotation_dir(root)
    cap_file = ann / "captions" / f"cap.rc2.{split}.json"
    skipped: list[tuple[str, str]] = []
    records = _read_json(cap_file, "cirr captions", list)
    split_map = _read_json(ann / "image_splits" / f"split.rc2.{split}.json", "cirr image split", dict)
    images = {}
    for name, rel in split_map.items():
        found = image_file(root, rel, (root, root / "img_raw"))
        if isinstance(found, str):
            skipped.append((name, found))
        else:
            images[name] = found
    reverse, rev_path = _reverse_texts(ann, split, skipped)
    queries = []
    for n, rec in _records(records, ("pairid", "reference", "caption"), cap_file, skipped):
        members = (rec.get("img_set") or {}).get("members") if isinstance(rec.get("img_set"), dict) else None
        target = rec.get("target_hard")
        q = BenchQuery(qid=str(rec["pairid"]), reference_id=rec["reference"], text=rec["caption"],
                       target_ids=[target] if target else [], group_ids=list(members) if members else None,
                       reverse_text=next((reverse[k] for k in _keys(rec) if k in reverse), None))
        if keep_query(q, images, skipped, need_target=split == "train"):
            queries.append(q)
    return BenchSplit("cirr", split, root, images, queries, {"all": list(images)}, skipped, len(records), rev_path)
