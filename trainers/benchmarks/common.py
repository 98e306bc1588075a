"""What the benchmark readers return: a split's images, its queries, and what was skipped and why.

The rules are the sources' (``pipeline.sources.cir_datasets``): a record without a needed key, an
image path leaving the root, a listed image whose file is absent, or a query naming an image the split
does not hold is skipped with ``"kind: detail"`` and counted; nothing fails silently.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.sources.cir_datasets import _read_json, _records, inside  # noqa: F401 - re-exported for readers

KINDS = ("cirr", "fashioniq", "circo")


@dataclass
class BenchQuery:
    """One composed query. ``target_ids``: [] on a test split; CIRCO: every ``gt_img_ids`` entry."""

    qid: str
    reference_id: str
    text: str
    target_ids: list[str]
    group_ids: list[str] | None = None  # CIRR img_set members (the reference among them)
    category: str | None = None  # FashionIQ
    reverse_text: str | None = None  # PTHA: the MTST authors' reverse text, when their file is there


@dataclass
class BenchSplit:
    """A benchmark split: every usable image by name, the queries, the galleries they rank over."""

    kind: str
    split: str
    root: Path
    images: dict[str, Path]
    queries: list[BenchQuery]
    galleries: dict[str, list[str]]  # "all", or one per FashionIQ category
    skipped: list[tuple[str, str]] = field(default_factory=list)
    records: int = 0
    reverse_file: Path | None = None

    @property
    def name(self) -> str:
        return f"{self.kind}/{self.split}"

    @property
    def has_targets(self) -> bool:
        return any(q.target_ids for q in self.queries)

    def counts(self) -> dict:
        """Records read, queries kept, images, and skips by kind (the part of a reason before ':')."""
        return {"records": self.records, "queries": len(self.queries), "images": len(self.images),
                "with_reverse": sum(q.reverse_text is not None for q in self.queries),
                "skipped": dict(Counter(r.split(":", 1)[0] for _, r in self.skipped))}

    def training_rows(self) -> list[dict]:
        """Queries with a target as rows in the shard columns (images as path structs), for training."""
        def img(name):
            return {"bytes": None, "path": str(self.images[name])}

        return [{"triplet_id": f"{self.kind}-{q.qid}", "reference_id": q.reference_id, "target_id": q.target_ids[0],
                 "reference_image": img(q.reference_id), "target_image": img(q.target_ids[0]),
                 "modification_text": q.text, "reverse_text": q.reverse_text,
                 "neg_text_aligned_image": None, "neg_image_aligned_image": None}
                for q in self.queries if q.target_ids]


def keep_query(q: BenchQuery, images: dict, skipped: list, need_target: bool) -> bool:
    """False (and a reason in ``skipped``) when the query names an image the split lacks."""
    if need_target and not q.target_ids:
        skipped.append((q.qid, "no_target: the record has no annotated target"))
        return False
    unknown = [i for i in [q.reference_id, *q.target_ids] if i not in images]
    if unknown:
        skipped.append((q.qid, f"unknown_image: {unknown[:3]} not among the split's usable images"))
        return False
    return True


def read_json_or_lines(path: Path, what: str) -> list:
    """A JSON list, or JSON lines (one record a line, as the MTST authors write their reverse files)."""
    text = path.read_text()
    try:
        data = json.loads(text)
        return data if isinstance(data, list) else [data]
    except ValueError:
        pass
    out = []
    for n, line in enumerate(text.splitlines()):
        if line.strip():
            try:
                out.append(json.loads(line))
            except ValueError as err:
                raise ValueError(f"{what}: {path} line {n + 1} is not JSON ({err})") from None
    return out


def image_file(root: Path, rel: str, bases: tuple[Path, ...]) -> Path | str:
    """The file ``rel`` names under one of ``bases`` (first that exists), or a ``"kind: detail"`` problem."""
    if not isinstance(rel, str):
        return f"missing_key: {rel!r} is not a relative path"
    cands = [inside(b, rel) for b in bases]
    if any(c is None for c in cands):
        return f"outside_root: path {rel!r} leaves the dataset root"
    found = next((c for c in cands if c.is_file()), None)
    return found if found is not None else f"missing: {rel} not found under {root}"
