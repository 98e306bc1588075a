"""CIRCO in its released layout (miccunifi/CIRCO).

``ROOT/annotations/{val,test}.json``: ``[{id, reference_img_id, target_img_id, relative_caption,
shared_concept, gt_img_ids}]`` (test without targets); the gallery is COCO 2017 unlabeled, listed by
``ROOT/COCO2017_unlabeled/annotations/image_info_unlabeled2017.json`` (``images``: id, file_name), files
under ``COCO2017_unlabeled/unlabeled2017/``; without the list, every ``*.jpg`` there (id = its number).
The query text is the relative caption (the official loader's ``relative_caption``); CIRCO has no
training split.
"""
from __future__ import annotations

from pathlib import Path

from trainers.benchmarks.common import BenchQuery, BenchSplit, _read_json, _records, image_file, keep_query

COCO = "COCO2017_unlabeled"


def check(root: str | Path, split: str) -> None:
    """Fail at once, naming the file, when ``root`` has no CIRCO ``split``."""
    root = Path(root)
    f = root / "annotations" / f"{split}.json"
    if split not in ("val", "test") or not f.is_file():
        raise FileNotFoundError(f"circo: {f} not found (splits: val, test): is {root} a CIRCO folder?")
    if not (root / COCO / "unlabeled2017").is_dir():
        raise FileNotFoundError(f"circo: {root / COCO / 'unlabeled2017'} not found: the gallery is COCO 2017 unlabeled")


def _gallery(root: Path, skipped: list) -> dict[str, Path]:
    base = root / COCO / "unlabeled2017"
    info = root / COCO / "annotations" / "image_info_unlabeled2017.json"
    if not info.is_file():
        return {str(int(p.stem)): p for p in sorted(base.glob("*.jpg")) if p.stem.isdigit()}
    out = {}
    for _, rec in _records(_read_json(info, "circo image info", dict).get("images", []), ("id", "file_name"),
                           info, skipped):
        found = image_file(root, rec["file_name"], (base,))
        if isinstance(found, str):
            skipped.append((str(rec["id"]), found))
        else:
            out[str(rec["id"])] = found
    return out


def read(root: str | Path, split: str = "val") -> BenchSplit:
    """The COCO gallery and the queries; on val every ``gt_img_ids`` entry is a target (target first)."""
    root = Path(root)
    check(root, split)
    skipped: list[tuple[str, str]] = []
    images = _gallery(root, skipped)
    ann = root / "annotations" / f"{split}.json"
    records = _read_json(ann, "circo annotations", list)
    queries = []
    for _, rec in _records(records, ("id", "reference_img_id", "relative_caption"), ann, skipped):
        gts = [str(g) for g in rec.get("gt_img_ids") or [] if str(g)]
        target = rec.get("target_img_id")
        if target is not None and str(target) not in gts:
            gts.insert(0, str(target))
        elif target is not None:
            gts.insert(0, gts.pop(gts.index(str(target))))
        q = BenchQuery(qid=str(rec["id"]), reference_id=str(rec["reference_img_id"]), text=rec["relative_caption"],
                       target_ids=gts)
        if keep_query(q, images, skipped, need_target=False):
            queries.append(q)
    return BenchSplit("circo", split, root, images, queries, {"all": list(images)}, skipped, len(records))
