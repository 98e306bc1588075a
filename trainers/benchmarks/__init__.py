"""Readers for the official benchmark layouts (CIRR, FashionIQ, CIRCO): ``read(kind, root, split)``.

``detect(root)`` names the layout of a folder (None for a cirforge dataset folder), so fine-tuning and
evaluation take either; ``check`` fails before any training when a needed file is absent.
"""
from __future__ import annotations

from pathlib import Path

from trainers.benchmarks import circo, cirr, fashioniq
from trainers.benchmarks.common import KINDS, BenchQuery, BenchSplit

READERS = {"cirr": cirr, "fashioniq": fashioniq, "circo": circo}
__all__ = ["BenchQuery", "BenchSplit", "KINDS", "check", "detect", "read"]


def detect(root: str | Path) -> str | None:
    """'cirr', 'fashioniq', 'circo' from the folder's annotation files; None otherwise."""
    root = Path(root)
    if list(cirr.annotation_dir(root).glob("captions/cap.rc2.*.json")):
        return "cirr"
    if list(root.glob("captions/cap.*.*.json")):
        return "fashioniq"
    if (root / "annotations").is_dir() and (root / circo.COCO).is_dir():
        return "circo"
    return None


def _kind(kind: str | None, root) -> str:
    found = kind or detect(root)
    if found not in READERS:
        raise FileNotFoundError(f"{root}: not a CIRR, FashionIQ or CIRCO folder (benchmark {kind!r}); "
                                f"see docs/benchmarks-real.md for the layouts")
    return found


def check(root: str | Path, split: str, kind: str | None = None) -> str:
    """Raise FileNotFoundError naming the missing file; returns the benchmark kind."""
    kind = _kind(kind, root)
    READERS[kind].check(root, split)
    return kind


def read(root: str | Path, split: str, kind: str | None = None) -> BenchSplit:
    """One split of a benchmark folder (kind detected when not given)."""
    return READERS[_kind(kind, root)].read(root, split)
