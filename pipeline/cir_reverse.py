"""Reverse modification texts in the MTST authors' layout (zyinan99/MTST_PTHA, ``src/data_utils.py``).

Their PTHA loaders read, for the training split, one JSON record per line beside the captions:

- CIRR: ``<root>/cirr/captions/cirr_train_modifier_rev_long.json``: the record of
  ``cap.rc2.train.json`` (``pairid``, ``reference``, ``target_hard``, ``caption``, ``img_set``, ...)
  plus ``modifier_generated``, the reverse text;
- FashionIQ: ``<root>/captions/cap_train_<category>_rev.json``: ``candidate``, ``target``,
  ``captions`` plus ``modifier_generated``; here ``candidate`` and ``target`` carry the file
  extension, because that loader opens ``images/<candidate with jpg replaced by png>`` as it is.

Other splits use the same patterns with the split's name (the authors released train only).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

REVERSE_KEY = "modifier_generated"


def cirr_annotation_dir(root: str | Path) -> Path:
    """The folder with ``captions/`` and ``image_splits/``: ``<root>/cirr`` in the official layout
    (images in ``<root>/train``, ``dev``, ``test1``), else the root itself (an older cirforge export)."""
    root = Path(root)
    return root / "cirr" if (root / "cirr" / "captions").is_dir() else root


def cirr_reverse_file(root: str | Path, split: str = "train") -> Path:
    return cirr_annotation_dir(root) / "captions" / f"cirr_{split}_modifier_rev_long.json"


def fashioniq_reverse_file(root: str | Path, split: str, category: str) -> Path:
    return Path(root) / "captions" / f"cap_{split}_{category}_rev.json"


def write_jsonl(path: Path, records: list[dict]) -> None:
    """One JSON object a line, written to a temporary name and renamed (never half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    os.replace(tmp, path)


def read_jsonl(path: Path) -> tuple[list[dict], list[tuple[str, str]]]:
    """The records of a JSON-lines file and, for each line that is not a JSON object, (where, why)."""
    records, bad = [], []
    for n, line in enumerate(Path(path).read_text().splitlines()):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError as err:
            bad.append((f"{path.name}:{n + 1}", f"bad_json: {err}"))
            continue
        if isinstance(rec, dict):
            records.append(rec)
        else:
            bad.append((f"{path.name}:{n + 1}", "bad_json: not an object"))
    return records, bad


def strip_extension(name: str) -> str:
    """``B00X.png`` -> ``B00X`` (the FashionIQ reverse files name images with their extension)."""
    stem, ext = os.path.splitext(str(name))
    return stem if ext.lower() in (".png", ".jpg", ".jpeg", ".webp") else str(name)


def read_reverse_texts(kind: str, root: str | Path, split: str,
                       categories: list[str] | None = None) -> tuple[dict[tuple[str, str], str], list]:
    """``{(reference, target): reverse text}`` from the authors' files of ``split`` when present
    (``{}`` when not), and the records skipped with reasons."""
    if kind == "cirr":
        files = [(cirr_reverse_file(root, split), "reference", "target_hard")]
    else:
        files = [(fashioniq_reverse_file(root, split, c), "candidate", "target") for c in categories or []]
    out, skipped = {}, []
    for path, ref_key, tgt_key in files:
        if not path.is_file():
            continue
        records, bad = read_jsonl(path)
        skipped += bad
        for n, r in enumerate(records):
            if not all(isinstance(r.get(k), str) for k in (ref_key, tgt_key, REVERSE_KEY)):
                skipped.append((f"{path.name}:{n + 1}", f"missing_key: needs {ref_key}, {tgt_key}, {REVERSE_KEY}"))
                continue
            out[(strip_extension(r[ref_key]), strip_extension(r[tgt_key]))] = r[REVERSE_KEY]
    return out, skipped
