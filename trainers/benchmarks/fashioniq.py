"""FashionIQ in its released layout (XiaoxiaoGuo/fashion-iq, as CLIP4Cir / SPRC / MTST read it).

``ROOT/captions/cap.<category>.<split>.json`` (``candidate``, ``target``, ``captions``: two texts),
``ROOT/image_splits/split.<category>.<split>.json`` (image names: the category's gallery) and
``ROOT/images/<name>.png``. The two captions are joined with " and ", as the sources do. PTHA reverse
texts: ``captions/cap_<split>_<category>_rev.json`` (JSON lines; ``modifier_generated``), when present.
"""
from __future__ import annotations

from pathlib import Path

from pipeline.sources.cir_datasets import FASHIONIQ_CATEGORIES, FASHIONIQ_EXTENSIONS, join_captions
from trainers.benchmarks.common import (BenchQuery, BenchSplit, _read_json, _records, image_file, keep_query,
                                        read_json_or_lines)


def categories_of(root: Path, split: str) -> list[str]:
    """The three FashionIQ categories that have a caption file for ``split``, in the usual order."""
    return [c for c in FASHIONIQ_CATEGORIES if (root / "captions" / f"cap.{c}.{split}.json").is_file()]


def check(root: str | Path, split: str, categories: list[str] | None = None) -> None:
    """Fail at once when ``root`` has no FashionIQ caption file for ``split``."""
    root = Path(root)
    found = categories_of(root, split)
    missing = [c for c in categories if c not in found] if categories else []
    if not found or missing:
        raise FileNotFoundError(f"fashioniq: no {root}/captions/cap.<category>.{split}.json for "
                                f"{missing or list(FASHIONIQ_CATEGORIES)}: is {root} a FashionIQ folder?")


def _find(root: Path, name: str) -> Path | str:
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name in (".", ".."):
        return f"outside_root: image name {name!r} is not a plain file name"
    found = None
    for ext in FASHIONIQ_EXTENSIONS:
        found = image_file(root, f"{name}{ext}", (root / "images",))
        if not isinstance(found, str):
            return found
    return f"missing: images/{name}.png not found"


def _reverse_texts(root: Path, split: str, cat: str, skipped: list) -> tuple[dict, Path | None]:
    path = root / "captions" / f"cap_{split}_{cat}_rev.json"
    if not path.is_file():
        return {}, None
    recs = _records(read_json_or_lines(path, "fashioniq reverse texts"), ("candidate", "target", "modifier_generated"),
                    path, skipped)
    return {(r["candidate"], r["target"]): r["modifier_generated"] for _, r in recs}, path


def read(root: str | Path, split: str = "val", categories: list[str] | None = None) -> BenchSplit:
    """Images, per-category galleries (the split file's names whose file exists) and queries."""
    root = Path(root)
    check(root, split, categories)
    cats = categories or categories_of(root, split)
    images: dict[str, Path] = {}
    galleries: dict[str, list[str]] = {}
    queries: list[BenchQuery] = []
    skipped: list[tuple[str, str]] = []
    records, rev_path = 0, None
    for cat in cats:
        cap_file = root / "captions" / f"cap.{cat}.{split}.json"
        caps = _read_json(cap_file, "fashioniq captions", list)
        records += len(caps)
        split_file = root / "image_splits" / f"split.{cat}.{split}.json"
        # Without the split file the gallery is the captions' images (a cirforge export, a partial copy).
        names = (_read_json(split_file, "fashioniq image split", list) if split_file.is_file()
                 else list(dict.fromkeys(n for c in caps if isinstance(c, dict) for n in (c.get("candidate"), c.get("target")) if n)))
        galleries[cat] = []
        for n in names:
            found = images.get(n) or _find(root, n)
            if isinstance(found, str):
                skipped.append((f"{cat}:{n}", found))
            else:
                images[n] = found
                galleries[cat].append(n)
        reverse, path = _reverse_texts(root, split, cat, skipped)
        rev_path = rev_path or path
        for n, rec in _records(caps, ("candidate", "captions"), cap_file, skipped):
            target = rec.get("target")
            q = BenchQuery(qid=f"{cat}-{n}", reference_id=rec["candidate"], text=join_captions(rec["captions"]),
                           target_ids=[target] if target else [], category=cat,
                           reverse_text=reverse.get((rec["candidate"], target)))
            if keep_query(q, images, skipped, need_target=split == "train"):
                queries.append(q)
    return BenchSplit("fashioniq", split, root, images, queries, galleries, skipped, records, rev_path)
