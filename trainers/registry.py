"""A model registry folder: numbered versions with their metrics, and an atomically written ``current`` pointer.

Layout::

    <registry>/versions/v0001/model/        the saved model (trainers.factory.save_model layout)
    <registry>/versions/v0001/metrics.json  its metrics on the benchmark it was judged on
    <registry>/versions/v0001/info.json     where it came from, the decision and its reasons
    <registry>/current                      the promoted version's name (one line)
    <registry>/history.jsonl                one line per registered version

A version folder appears under its final name only when complete (built aside, then renamed), and
``current`` is replaced with ``os.replace``: a reader sees the old or the new pointer, never a partial one.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

CURRENT = "current"
VERSIONS = "versions"
PROMOTE_ON = ("R@1", "R@5", "hard_R@1")  # R@1 moves now that the tiny model learns ShapesWorld


@dataclass
class Decision:
    """Whether a candidate replaces the current model, and why, metric by metric."""

    promote: bool
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"promote": self.promote, "reasons": self.reasons}


def decide(candidate: dict[str, float], current: dict[str, float] | None, keys: Sequence[str] = PROMOTE_ON,
           tolerance: float = 0.0) -> Decision:
    """Promote when there is no current model, or when no metric in ``keys`` drops by more than
    ``tolerance`` (points) against the current model's value on the same benchmark."""
    if current is None:
        return Decision(True, ["no current model"])
    missing = [k for k in keys if k not in candidate or k not in current]
    if missing:
        raise KeyError(f"metrics {missing} missing: the benchmark needs FBCIR negatives for hard_R@1 and "
                       f">= 5 gallery images for R@5 (have candidate {sorted(candidate)}, current {sorted(current)})")
    reasons, ok = [], True
    for k in keys:
        new, old = float(candidate[k]), float(current[k])
        held = not math.isnan(new) and new >= old - tolerance
        ok &= held
        reasons.append(f"{k}: {new:.2f} vs current {old:.2f} ({'holds' if held else 'regresses'})")
    return Decision(ok, reasons)


class Registry:
    """The registry at ``root`` (created on first write)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @property
    def versions_dir(self) -> Path:
        return self.root / VERSIONS

    def versions(self) -> list[str]:
        if not self.versions_dir.is_dir():
            return []
        return sorted(p.name for p in self.versions_dir.iterdir() if re.fullmatch(r"v\d{4,}", p.name))

    def current(self) -> str | None:
        """The promoted version's name, or None when nothing was promoted yet."""
        p = self.root / CURRENT
        if not p.is_file():
            return None
        name = p.read_text().strip()
        if not (self.versions_dir / name / "model").is_dir():
            raise FileNotFoundError(f"{p} points to {name!r}, which is not in {self.versions_dir}: "
                                    "restore that folder or rewrite the pointer with Registry.promote")
        return name

    def model_dir(self, version: str) -> Path:
        return self.versions_dir / version / "model"

    def metrics(self, version: str) -> dict[str, float]:
        return json.loads((self.versions_dir / version / "metrics.json").read_text())

    def info(self, version: str) -> dict[str, Any]:
        return json.loads((self.versions_dir / version / "info.json").read_text())

    def register(self, model_dir: str | Path, metrics: dict[str, float], info: dict[str, Any] | None = None) -> str:
        """Copy a saved model in as the next version with its metrics; returns the version name."""
        model_dir = Path(model_dir)
        if not (model_dir / "model.safetensors").is_file():
            raise FileNotFoundError(f"{model_dir} holds no model.safetensors: pass a folder written by save_model")
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        existing = self.versions()
        version = f"v{(int(existing[-1][1:]) + 1 if existing else 1):04d}"
        tmp = self.versions_dir / f".{version}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(model_dir, tmp / "model")
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=1, sort_keys=True))
        record = {"version": version, "registered_at": _now(), **(info or {})}
        (tmp / "info.json").write_text(json.dumps(record, indent=1, default=str))
        os.replace(tmp, self.versions_dir / version)
        with open(self.root / "history.jsonl", "a") as f:
            f.write(json.dumps({"version": version, "metrics": metrics, **record}, default=str) + "\n")
        return version

    def promote(self, version: str) -> None:
        """Point ``current`` at ``version`` (atomic replace)."""
        if not (self.versions_dir / version / "model").is_dir():
            raise FileNotFoundError(f"no version {version!r} in {self.versions_dir} (have {self.versions()})")
        tmp = self.root / f".{CURRENT}.tmp-{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(version + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.root / CURRENT)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
