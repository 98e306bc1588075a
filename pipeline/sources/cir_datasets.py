"""Existing CIR datasets in their public JSON layouts (CIRR, FashionIQ): the image pool and the
annotated triplets (the seed set).

CIRR: ``captions/cap.rc2.<split>.json`` (``reference``, ``target_hard``, ``caption``,
``img_set``) and ``image_splits/split.rc2.<split>.json`` (name -> relative path; taken from the
root, else from ``img_raw/``). FashionIQ: ``captions/cap.<category>.<split>.json``
(``candidate``, ``target``, ``captions`` of two texts), optional
``image_splits/split.<category>.<split>.json`` (names), images ``images/<name>.png|jpg``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from .base import Entry, Source

FASHIONIQ_CATEGORIES = ("dress", "shirt", "toptee")
FASHIONIQ_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")


def _read_json(path: Path, what: str):
    if not path.is_file():
        raise ValueError(f"{what}: {str(path)!r} not found")
    try:
        return json.loads(path.read_text())
    except ValueError as err:
        raise ValueError(f"{what}: {path} is not valid JSON ({err})") from None


class _CirSource(Source):
    """Shared: image entries from a name -> (path, label) map; triplets sorted, checked against it."""

    def __init__(self, root: str | Path, split: str, max_pixels: int | None = None):
        super().__init__(max_pixels)
        self.root = Path(root)
        self.split = split
        self.skipped_triplets: list[tuple[str, str]] = []

    def images(self) -> dict[str, tuple[Path | None, str | None]]:  # pragma: no cover - subclass hook
        raise NotImplementedError

    def raw_triplets(self) -> list[dict]:  # pragma: no cover - subclass hook
        raise NotImplementedError

    def entries(self) -> Iterator[Entry]:
        for name, (path, label) in sorted(self.images().items()):
            if path is None or not path.is_file():
                yield Entry(name, path=path, label=label, problem="missing: image file not found")
            else:
                yield Entry(name, path=path, label=label)

    def triplets(self) -> list[dict]:
        """The annotated triplets whose two images are listed for this split, sorted."""
        known = self.images()
        self.skipped_triplets = []
        out = []
        for t in self.raw_triplets():
            missing = [i for i in (t["reference_id"], t["target_id"]) if i not in known]
            if t["target_id"] is None:
                self.skipped_triplets.append((t["reference_id"], "no_target: the split has no annotated target"))
            elif missing:
                self.skipped_triplets.append((f"{t['reference_id']}->{t['target_id']}",
                                              f"unknown_image: {missing} not listed in the split"))
            else:
                out.append(t)
        return sorted(out, key=lambda t: (t["reference_id"], t["target_id"], t["modification_text"]))


class CirrSource(_CirSource):
    """CIRR (NLVR2 images); label = the annotation image set id, where an image is in one."""

    kind = "cirr"

    def __init__(self, root: str | Path, split: str = "train", max_pixels: int | None = None):
        super().__init__(root, split, max_pixels)
        self._captions = _read_json(self.root / "captions" / f"cap.rc2.{split}.json", "cirr captions")
        self._split_map = _read_json(self.root / "image_splits" / f"split.rc2.{split}.json", "cirr image split")

    def images(self) -> dict[str, tuple[Path | None, str | None]]:
        sets = {}
        for c in self._captions:
            img_set = c.get("img_set") or {}
            for m in img_set.get("members", [c["reference"]]):
                sets.setdefault(m, f"set-{img_set.get('id')}" if "id" in img_set else None)
        out = {}
        for name, rel in self._split_map.items():
            cands = [self.root / rel, self.root / "img_raw" / rel]
            path = next((p for p in cands if p.is_file()), cands[0])
            out[name] = (path.resolve() if path.is_file() else path, sets.get(name))
        return out

    def raw_triplets(self) -> list[dict]:
        return [{"reference_id": c["reference"], "target_id": c.get("target_hard"),
                 "modification_text": c["caption"], "captions": [c["caption"]],
                 "dataset": "cirr", "split": self.split, "pair_id": c.get("pairid")}
                for c in self._captions]


class FashionIQSource(_CirSource):
    """FashionIQ; label = category; the two captions are joined with ' and ' (the usual practice)."""

    kind = "fashioniq"

    def __init__(self, root: str | Path, split: str = "train", categories: list[str] | None = None,
                 max_pixels: int | None = None):
        super().__init__(root, split, max_pixels)
        cap_dir = self.root / "captions"
        if categories is None:
            categories = [c for c in FASHIONIQ_CATEGORIES if (cap_dir / f"cap.{c}.{split}.json").is_file()]
            if not categories:
                raise ValueError(f"fashioniq: no {cap_dir}/cap.<category>.{split}.json files "
                                 f"(categories {FASHIONIQ_CATEGORIES})")
        self.categories = list(categories)
        self._captions = {c: _read_json(cap_dir / f"cap.{c}.{split}.json", "fashioniq captions")
                          for c in self.categories}

    def _find(self, name: str) -> Path | None:
        for ext in FASHIONIQ_EXTENSIONS:
            p = self.root / "images" / f"{name}{ext}"
            if p.is_file():
                return p.resolve()
        return None

    def images(self) -> dict[str, tuple[Path | None, str | None]]:
        out = {}
        for cat in self.categories:
            split_file = self.root / "image_splits" / f"split.{cat}.{self.split}.json"
            if split_file.is_file():
                names = _read_json(split_file, "fashioniq image split")
            else:
                names = [n for c in self._captions[cat] for n in (c["candidate"], c["target"])]
            for n in names:
                out.setdefault(n, (self._find(n), cat))
        return out

    def raw_triplets(self) -> list[dict]:
        return [{"reference_id": c["candidate"], "target_id": c.get("target"),
                 "modification_text": " and ".join(s.strip() for s in c["captions"]),
                 "captions": list(c["captions"]), "dataset": "fashioniq", "split": self.split, "category": cat}
                for cat in self.categories for c in self._captions[cat]]
