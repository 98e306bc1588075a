"""Existing CIR datasets in their public JSON layouts (CIRR, FashionIQ): the image pool and the
annotated triplets (the seed set).

CIRR (official layout, Cuberick-Orion/CIRR): ``cirr/captions/cap.rc2.<split>.json``
(``reference``, ``target_hard``, ``caption``, ``img_set``) and ``cirr/image_splits/split.rc2.<split>.json``
(name -> path relative to the root, e.g. ``./train/34/<name>.png``; taken from the root, else from
``img_raw/``); a root without ``cirr/`` holding ``captions/`` itself is read too. FashionIQ: ``captions/cap.<category>.<split>.json``
(``candidate``, ``target``, ``captions`` of two texts), optional
``image_splits/split.<category>.<split>.json`` (names), images ``images/<name>.png|jpg``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator

from pipeline.cir_reverse import cirr_annotation_dir

from .base import MIN_SIDE, Entry, Source

FASHIONIQ_CATEGORIES = ("dress", "shirt", "toptee")
FASHIONIQ_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")


def _read_json(path: Path, what: str, kind: type | None = None):
    if not path.is_file():
        raise ValueError(f"{what}: {str(path)!r} not found")
    try:
        data = json.loads(path.read_text())
    except ValueError as err:
        raise ValueError(f"{what}: {path} is not valid JSON ({err})") from None
    if kind is not None and not isinstance(data, kind):
        raise ValueError(f"{what}: {path} must hold a JSON {'list' if kind is list else 'object'}, "
                         f"got {type(data).__name__}")
    return data


def _records(data: list, keys: tuple[str, ...], file: Path, skipped: list) -> list[tuple[int, dict]]:
    """The records that have every key in ``keys``; the others go to ``skipped`` with the reason."""
    out = []
    for n, rec in enumerate(data):
        miss = [k for k in keys if not isinstance(rec, dict) or k not in rec]
        if miss:
            skipped.append((f"{file.name}[{n}]", f"missing_key: record {n} of {file.name} has no {miss[0]!r}"))
        else:
            out.append((n, rec))
    return out


def inside(root: Path, rel: str | Path) -> Path | None:
    """``root / rel`` when the path text stays inside ``root`` (no absolute path, no ``..`` out of
    it), else None. Links inside the root are the dataset owner's and are followed (a CIRR
    ``img_raw`` is often a link to the NLVR2 images)."""
    rel = os.path.normpath(str(rel))
    if os.path.isabs(rel) or rel == ".." or rel.startswith(".." + os.sep) or "\0" in rel:
        return None
    return root / rel


class _CirSource(Source):
    """Shared: image entries from a name -> (path, label) map; triplets sorted, checked against it."""

    dedup_images = False  # annotations name images by id: keep every listed one

    def __init__(self, root: str | Path, split: str, max_pixels: int | None = None, min_side: int = MIN_SIDE):
        super().__init__(max_pixels, min_side)
        self.root = Path(root)
        self.split = split
        self.skipped_triplets: list[tuple[str, str]] = []
        self.bad_records: list[tuple[str, str]] = []  # (file[index], missing_key reason)

    def images(self) -> dict[str, tuple[Path | None, str | None] | str]:  # pragma: no cover - subclass hook
        """name -> (path or None, label), or name -> a problem ("outside_root: ...")."""
        raise NotImplementedError

    def raw_triplets(self) -> list[dict]:  # pragma: no cover - subclass hook
        raise NotImplementedError

    def entries(self) -> Iterator[Entry]:
        for name, value in sorted(self.images().items()):
            if isinstance(value, str):
                yield Entry(name, problem=value)
                continue
            path, label = value
            if path is None or not path.is_file():
                yield Entry(name, path=path, label=label, problem="missing: image file not found")
            else:
                yield Entry(name, path=path, label=label)

    def triplets(self) -> list[dict]:
        """The annotated triplets whose two images are listed for this split, sorted; the others
        (and records with a missing key) are in ``skipped_triplets`` with the reason."""
        known = self.images()
        self.skipped_triplets = list(self.bad_records)
        out = []
        for t in self.raw_triplets():
            pair = (t["reference_id"], t["target_id"])
            missing = [i for i in pair if i not in known]
            bad = [f"{i}: {known[i]}" for i in pair if isinstance(known.get(i), str)]
            if t["target_id"] is None:
                self.skipped_triplets.append((t["reference_id"], "no_target: the split has no annotated target"))
            elif missing:
                self.skipped_triplets.append((f"{pair[0]}->{pair[1]}", f"unknown_image: {missing} not listed in the split"))
            elif bad:
                self.skipped_triplets.append((f"{pair[0]}->{pair[1]}", f"bad_image: {bad[0]}"))
            else:
                out.append(t)
        return sorted(out, key=lambda t: (t["reference_id"], t["target_id"], t["modification_text"]))


class CirrSource(_CirSource):
    """CIRR (NLVR2 images); label = the annotation image set id, where an image is in one."""

    kind = "cirr"

    def __init__(self, root: str | Path, split: str = "train", max_pixels: int | None = None,
                 min_side: int = MIN_SIDE):
        super().__init__(root, split, max_pixels, min_side)
        ann = cirr_annotation_dir(self.root)
        cap_file = ann / "captions" / f"cap.rc2.{split}.json"
        self._captions = [c for _, c in _records(_read_json(cap_file, "cirr captions", list),
                                                 ("reference", "caption"), cap_file, self.bad_records)]
        self._split_map = _read_json(ann / "image_splits" / f"split.rc2.{split}.json", "cirr image split", dict)

    def images(self) -> dict[str, tuple[Path | None, str | None] | str]:
        sets = {}
        for c in self._captions:
            img_set = c.get("img_set") if isinstance(c.get("img_set"), dict) else {}
            for m in img_set.get("members", [c["reference"]]):
                sets.setdefault(m, f"set-{img_set.get('id')}" if "id" in img_set else None)
        out: dict = {}
        for name, rel in self._split_map.items():
            if not isinstance(rel, str):
                out[name] = f"missing_key: the split map gives {rel!r}, not a relative path"
                continue
            cands = [inside(self.root, rel), inside(self.root / "img_raw", rel)]
            if cands[0] is None or cands[1] is None:
                out[name] = f"outside_root: path {rel!r} leaves the dataset root"
                continue
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
                 max_pixels: int | None = None, min_side: int = MIN_SIDE):
        super().__init__(root, split, max_pixels, min_side)
        cap_dir = self.root / "captions"
        if categories is None:
            # the three FashionIQ categories first, then any other (e.g. a cirforge export's)
            found = {p.name[len("cap."):-len(f".{split}.json")] for p in cap_dir.glob(f"cap.*.{split}.json")}
            categories = [c for c in FASHIONIQ_CATEGORIES if c in found] + sorted(found - set(FASHIONIQ_CATEGORIES))
            if not categories:
                raise ValueError(f"fashioniq: no {cap_dir}/cap.<category>.{split}.json files "
                                 f"(categories {FASHIONIQ_CATEGORIES})")
        self.categories = list(categories)
        self._captions = {}
        for c in self.categories:
            f = cap_dir / f"cap.{c}.{split}.json"
            recs = _records(_read_json(f, "fashioniq captions", list), ("candidate", "captions"), f, self.bad_records)
            self._captions[c] = [r for _, r in recs]

    def _find(self, name: str) -> Path | str | None:
        if not isinstance(name, str) or not name or "/" in name or "\\" in name or name in (".", ".."):
            return f"outside_root: image name {name!r} is not a plain file name"
        for ext in FASHIONIQ_EXTENSIONS:
            p = inside(self.root / "images", f"{name}{ext}")
            if p is None:
                return f"outside_root: image {name + ext!r} leaves the dataset root"
            if p.is_file():
                return p.resolve()
        return None

    def images(self) -> dict[str, tuple[Path | None, str | None] | str]:
        out: dict = {}
        for cat in self.categories:
            split_file = self.root / "image_splits" / f"split.{cat}.{self.split}.json"
            if split_file.is_file():
                names = _read_json(split_file, "fashioniq image split", list)
            else:
                names = [n for c in self._captions[cat] for n in (c["candidate"], c.get("target")) if n is not None]
            for n in names:
                if n not in out:
                    found = self._find(n)
                    out[str(n)] = found if isinstance(found, str) else (found, cat)
        return out

    def raw_triplets(self) -> list[dict]:
        return [{"reference_id": c["candidate"], "target_id": c.get("target"),
                 "modification_text": join_captions(c["captions"]),
                 "captions": list(c["captions"]), "dataset": "fashioniq", "split": self.split, "category": cat}
                for cat in self.categories for c in self._captions[cat]]


def join_captions(captions) -> str:
    """FashionIQ's two relative captions as one text: ``"a and b"`` (the usual practice); empty and
    repeated captions count once (a cirforge export writes its one text twice)."""
    if isinstance(captions, str):
        captions = [captions]
    texts = list(dict.fromkeys(str(s).strip() for s in captions if str(s).strip()))
    return " and ".join(texts)
