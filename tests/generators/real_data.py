"""Tiny CIRR and FashionIQ folders in their official layouts, with mixed image sizes and a few bad
records, and a tiny InstructBLIP checkpoint whose word tokenizer knows their texts."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from generators.mtst.config import INSTRUCTION
from generators.mtst.tokenizer import build_word_tokenizer

COLORS = ("red", "green", "blue")
SIZES = ((40, 30), (64, 48), (36, 52), (48, 48))  # (width, height): mixed, none the model's 32 px


def _image(path: Path, color: int, k: int, rng) -> None:
    w, h = SIZES[k % len(SIZES)]
    arr = rng.integers(0, 60, size=(h, w, 3), dtype=np.uint8)
    arr[..., color] += 180
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _pairs(n: int, seed: int):
    """(reference color, target color, text, reverse text) per pair: "make it <target color>"."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        a, b = (int(x) for x in rng.choice(3, size=2, replace=False))
        yield a, b, f"make it {COLORS[b]}", f"make it {COLORS[a]}"


def write_cirr(root: Path, n_pairs: int = 12, seed: int = 0, split: str = "train") -> Path:
    """``root/cirr/{captions,image_splits}`` + ``root/train/<k>/<name>.png``; the last three records are
    bad: no caption key, a target whose file is absent, a corrupt reference file."""
    rng = np.random.default_rng(seed)
    folder = {"train": "train", "val": "dev", "test1": "test1"}[split]
    caps, split_map = [], {}
    for k, (a, b, text, _) in enumerate(_pairs(n_pairs, seed)):
        ref, tgt = f"{split}-{k}-0-img0", f"{split}-{k}-0-img1"
        for name, color, j in ((ref, a, 2 * k), (tgt, b, 2 * k + 1)):
            rel = f"./{folder}/{k % 3}/{name}.png" if split == "train" else f"./{folder}/{name}.png"
            _image(root / rel, color, j, rng)
            split_map[name] = rel
        caps.append({"pairid": k, "reference": ref, "target_hard": tgt, "target_soft": {tgt: 1.0}, "caption": text,
                     "img_set": {"id": k, "members": [ref, tgt]}})
    del caps[-3]["caption"]  # a record without its caption
    (root / split_map[caps[-2]["target_hard"]].lstrip("./")).unlink()  # a listed file that is not there
    (root / split_map[caps[-1]["reference"]].lstrip("./")).write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    for sub, name, obj in (("captions", f"cap.rc2.{split}.json", caps),
                           ("image_splits", f"split.rc2.{split}.json", split_map)):
        (root / "cirr" / sub).mkdir(parents=True, exist_ok=True)
        (root / "cirr" / sub / name).write_text(json.dumps(obj))
    return root


def write_fashioniq(root: Path, n_pairs: int = 12, seed: int = 1, categories=("dress", "shirt")) -> Path:
    """``captions/cap.<cat>.train.json``, ``image_splits/split.<cat>.train.json``, ``images/<name>.png``;
    one record lacks ``captions`` and one names an image with no file."""
    rng = np.random.default_rng(seed)
    for c, cat in enumerate(categories):
        caps, names = [], []
        for k, (a, b, text, _) in enumerate(_pairs(n_pairs // len(categories), seed + c)):
            ref, tgt = f"{cat[0].upper()}{k:03d}a", f"{cat[0].upper()}{k:03d}b"
            _image(root / "images" / f"{ref}.png", a, 2 * k, rng)
            _image(root / "images" / f"{tgt}.png", b, 2 * k + 1, rng)
            caps.append({"candidate": ref, "target": tgt, "captions": [text, text.replace("make it", "is")]})
            names += [ref, tgt]
        del caps[-1]["captions"]
        (root / "images" / f"{caps[-2]['target']}.png").unlink()
        for sub, name, obj in (("captions", f"cap.{cat}.train.json", caps),
                               ("image_splits", f"split.{cat}.train.json", names)):
            (root / sub).mkdir(parents=True, exist_ok=True)
            (root / sub / name).write_text(json.dumps(obj))
    return root


def real_tokenizer():
    """A word tokenizer over the fixtures' texts (what a real checkpoint's tokenizer would cover)."""
    return build_word_tokenizer([f"make it {c}" for c in COLORS] + [f"is {c} and" for c in COLORS] + [INSTRUCTION])
