"""Tiny copies of the official CIRR, FashionIQ and CIRCO layouts, with tinyworld images (8 distinct scenes)."""
from __future__ import annotations

import json
from pathlib import Path

from tests.trainers.tinyworld import COLORS, SHAPES, render

SCENES = [(s, c) for s in SHAPES for c in COLORS]  # 8 images


def _name(i: int) -> str:
    s, c = SCENES[i]
    return f"{s}-{c}"


def _img(path: Path, i: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    render(*SCENES[i]).save(path)


def _text(i: int, j: int) -> str:
    return f"make the {SCENES[j][0]} {SCENES[j][1]}"


def _dump(path: Path, data, lines: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in data) if lines else json.dumps(data))


PAIRS = [(0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4)]


def make_cirr(root: Path, reverse: bool = True) -> Path:
    """CLIP4Cir's layout: cirr/captions, cirr/image_splits, images under train/<k>/ and dev/."""
    for split, folder in (("train", "train/0"), ("val", "dev"), ("test1", "test1")):
        names = {f"{split}-{_name(i)}": f"./{folder}/{split}-{_name(i)}.png" for i in range(8)}
        for i, rel in enumerate(names.values()):
            _img(root / rel, i)
        recs = []
        for n, (i, j) in enumerate(PAIRS):
            members = [f"{split}-{_name(k)}" for k in range(4 * (i // 4), 4 * (i // 4) + 4)]
            rec = {"pairid": 100 * ("tv".index(split[0]) if split != "test1" else 2) + n,
                   "reference": f"{split}-{_name(i)}", "caption": _text(i, j),
                   "img_set": {"id": i // 4, "members": members}}
            if split != "test1":
                rec.update(target_hard=f"{split}-{_name(j)}", target_soft={f"{split}-{_name(j)}": 1.0})
            recs.append(rec)
        _dump(root / "cirr" / "captions" / f"cap.rc2.{split}.json", recs)
        _dump(root / "cirr" / "image_splits" / f"split.rc2.{split}.json", names)
        if split == "train" and reverse:
            rev = [{**r, "modifier_generated": _text(j, i)} for r, (i, j) in zip(recs, PAIRS)]
            _dump(root / "cirr" / "captions" / "cirr_train_modifier_rev_long.json", rev, lines=True)
    return root


def make_fashioniq(root: Path, reverse: bool = True) -> Path:
    """captions/cap.<cat>.<split>.json, image_splits/split.<cat>.<split>.json, images/<name>.png."""
    for cat, offset in (("dress", 0), ("shirt", 4)):
        for split in ("train", "val"):
            names = [f"{cat}{k}" for k in range(4)]
            for k, n in enumerate(names):
                _img(root / "images" / f"{n}.png", offset + k)
            recs = [{"candidate": f"{cat}{i % 4}", "target": f"{cat}{j % 4}",
                     "captions": [_text(i, j), f"is {SCENES[j][1]}"]} for i, j in PAIRS[offset : offset + 4]]
            _dump(root / "captions" / f"cap.{cat}.{split}.json", recs)
            _dump(root / "image_splits" / f"split.{cat}.{split}.json", names)
            if split == "train" and reverse:
                rev = [{**r, "modifier_generated": f"make it {SCENES[offset + int(r['candidate'][-1])][1]}"} for r in recs]
                _dump(root / "captions" / f"cap_train_{cat}_rev.json", rev, lines=True)
    return root


def make_circo(root: Path) -> Path:
    """annotations/{val,test}.json and the COCO unlabeled gallery with its image_info list."""
    images = []
    for i in range(8):
        fname = f"{i + 1:012d}.jpg"
        _img(root / "COCO2017_unlabeled" / "unlabeled2017" / fname, i)
        images.append({"id": i + 1, "file_name": fname})
    _dump(root / "COCO2017_unlabeled" / "annotations" / "image_info_unlabeled2017.json", {"images": images})
    val = [{"id": n, "reference_img_id": i + 1, "target_img_id": j + 1, "relative_caption": _text(i, j),
            "shared_concept": "a shape", "gt_img_ids": [j + 1, (j + 4) % 8 + 1]} for n, (i, j) in enumerate(PAIRS)]
    _dump(root / "annotations" / "val.json", val)
    _dump(root / "annotations" / "test.json", [{k: v for k, v in r.items() if k not in ("target_img_id", "gt_img_ids")}
                                                for r in val])
    return root
