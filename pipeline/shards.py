"""Parquet triplet shards: atomic commit per work unit, resume, and the manifest.

A run is cut into deterministic *units*. Everything a unit produces (one kept shard for its
split, one rejected shard) is written under a temporary name, fsynced and renamed; then the
unit's record ``_units/unit-NNNNN.json`` is written the same way. That record is the commit
marker: a rerun skips units that have one, and ``finalize`` builds ``manifest.json`` from them
(the counts per stage too: each record holds its unit's, counted from the rows' reasons).
A writer killed at any point leaves no file under a final shard name that is not complete.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import __version__
from pipeline.schema import CONTRACT_VERSION, REQUIRED_COLUMNS, SCORE_FIELDS, arrow_schema
from pipeline.stage import REJECT_COLUMN, add_rejections, first_rejections, funnel

UNITS_DIR = "_units"
MANIFEST = "manifest.json"


def unit_name(unit: int) -> str:
    return f"part-{unit:05d}.parquet"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that ``path`` is either absent, old, or complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _write_table_atomic(table: pa.Table, path: Path, row_group_size: int, compression: str) -> dict:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(table, tmp, row_group_size=row_group_size,
                   compression=None if compression == "none" else compression)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    return {"rows": table.num_rows, "bytes": path.stat().st_size, "sha256": sha256_file(path)}


def rows_to_table(rows: list[dict], rejected: bool) -> pa.Table:
    """Build a contract table from row dicts (missing nullable columns become null)."""
    schema = arrow_schema(rejected=rejected)
    cols = {}
    for f in schema:
        vals = [r.get(f.name) for r in rows]
        if f.name in REQUIRED_COLUMNS and any(v is None for v in vals):
            bad = next(r for r in rows if r.get(f.name) is None)
            raise ValueError(f"row {bad.get('triplet_id')!r} has no value for required column {f.name!r}")
        if f.name == "scores":
            vals = [{k: (None if v is None else float(v)) for k, v in ((k, (s or {}).get(k)) for k in SCORE_FIELDS)}
                    for s in vals]
        cols[f.name] = pa.array(vals, type=f.type)
    return pa.Table.from_pydict(cols, schema=schema)


@dataclass
class ShardWriter:
    """Collects the rows of each unit and commits the unit when all its rows have arrived."""

    root: Path
    row_group_size: int = 100
    compression: str = "zstd"
    embed_images: bool = True
    # The chain's stage names in run order (the Runtime that feeds the writer sets them): recorded
    # per unit, so the manifest counts rows through each stage of the chain actually run.
    stages: tuple[str, ...] = ()
    _pending: dict[int, list[dict]] = field(default_factory=dict)
    _expected: dict[int, int] = field(default_factory=dict)
    _extra: dict[int, dict] = field(default_factory=dict)

    def __post_init__(self):
        self.root = Path(self.root)
        (self.root / UNITS_DIR).mkdir(parents=True, exist_ok=True)
        self.clean_temporaries()

    # -- resume -------------------------------------------------------------------------------
    def committed_units(self) -> set[int]:
        return committed_units(self.root)

    def clean_temporaries(self) -> int:
        """Remove temp files a killed writer left behind (never a final name)."""
        n = 0
        for p in self.root.rglob(".*.tmp-*"):
            p.unlink(missing_ok=True)
            n += 1
        return n

    # -- writing ------------------------------------------------------------------------------
    def expect(self, unit: int, n_rows: int, extra: dict | None = None) -> None:
        """Declare a unit: how many rows will arrive (``extra`` goes into its record)."""
        self._expected[unit] = n_rows
        self._extra[unit] = extra or {}
        self._pending.setdefault(unit, [])
        if n_rows == 0:
            self.commit(unit)

    def add(self, rows: Iterable[dict]) -> list[int]:
        """Add rows (each with a ``unit`` key); returns the units committed by this call."""
        done = []
        for r in rows:
            u = int(r["unit"])
            if u not in self._expected:
                raise KeyError(f"row for unit {u} arrived before ShardWriter.expect({u}, ...)")
            self._pending[u].append(r)
            if len(self._pending[u]) == self._expected[u]:
                self.commit(u)
                done.append(u)
        return done

    def commit(self, unit: int) -> dict:
        rows = sorted(self._pending.pop(unit), key=lambda r: r["triplet_id"])
        expected = self._expected.pop(unit)
        if len(rows) != expected:
            raise RuntimeError(f"unit {unit}: {len(rows)} rows arrived, {expected} expected")
        if not self.embed_images:
            rows = [_strip_bytes(r) for r in rows]
        now = dt.datetime.now(dt.timezone.utc)
        rows = [r if r.get("created_at") else {**r, "created_at": now} for r in rows]
        kept = [r for r in rows if not r.get(REJECT_COLUMN)]
        rejected = [r for r in rows if r.get(REJECT_COLUMN)]
        record: dict[str, Any] = {
            "unit": unit, "rows_in": len(rows), "rows_kept": len(kept),
            "rows_rejected": len(rejected), "reject_reasons": _count_reasons(rejected),
            "stages": list(self.stages), "stage_rejections": first_rejections(r[REJECT_COLUMN] for r in rejected),
            "shards": [], "committed_at": now.isoformat(), **self._extra.pop(unit),
        }
        parts = [(f"data/{s}", s, [r for r in kept if r["split"] == s], False)
                 for s in sorted({r["split"] for r in kept})]
        parts.append(("rejected", "rejected", rejected, True))
        for sub, split, part, is_rej in parts:
            if not part:
                continue
            rel = f"{sub}/{unit_name(unit)}"
            info = _write_table_atomic(rows_to_table(part, is_rej), self.root / rel,
                                       self.row_group_size, self.compression)
            record["shards"].append({"path": rel, "split": split, **info})
        atomic_write_bytes(self.root / UNITS_DIR / f"unit-{unit:05d}.json",
                           json.dumps(record, indent=1, sort_keys=True).encode())
        return record

    @property
    def open_units(self) -> list[int]:
        return sorted(self._expected)


def _strip_bytes(row: dict) -> dict:
    row = dict(row)
    for k, v in row.items():
        if isinstance(v, dict) and set(v) == {"bytes", "path"}:
            if not v.get("path"):
                raise ValueError(f"row {row.get('triplet_id')}: column {k} has no path; "
                                 "set shards.embed_images: true for sources without image files")
            row[k] = {"bytes": None, "path": v["path"]}
    return row


def _count_reasons(rows: list[dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rows:
        for reason in r[REJECT_COLUMN]:
            out[reason] = out.get(reason, 0) + 1
    return dict(sorted(out.items()))


class UnsafePath(ValueError):
    """A path in a manifest or unit record that is absolute or leaves the dataset folder."""


def shard_path(root: Path, rel: str) -> Path:
    """``root / rel`` for a shard path read from a manifest: relative, and inside ``root`` even
    after links are resolved; anything else (``../../etc/passwd``, ``/tmp/x``) is refused."""
    root = Path(root)
    if not isinstance(rel, str) or not rel or "\0" in rel or Path(rel).is_absolute() or ".." in Path(rel).parts:
        raise UnsafePath(f"{root / MANIFEST}: shard path {rel!r} is not a relative path inside the dataset; "
                         "the manifest is damaged or not from cirforge")
    path = root / rel
    if not path.resolve().is_relative_to(root.resolve()):
        raise UnsafePath(f"{root / MANIFEST}: shard path {rel!r} links outside the dataset folder")
    return path


def load_manifest(root: Path) -> dict:
    """``manifest.json`` with every shard path checked by ``shard_path``."""
    root = Path(root)
    manifest = json.loads((root / MANIFEST).read_text())
    for s in manifest.get("shards", []):
        shard_path(root, s.get("path"))
    return manifest


def committed_units(root: Path) -> set[int]:
    """The units whose shards are committed (their unit record exists)."""
    return {int(p.stem.split("-")[1]) for p in (Path(root) / UNITS_DIR).glob("unit-*.json")}


def load_unit_records(root: Path) -> list[dict]:
    records = [json.loads(p.read_text()) for p in sorted((Path(root) / UNITS_DIR).glob("unit-*.json"))]
    for r in records:
        for s in r.get("shards", []):
            shard_path(root, s.get("path"))
    return records


def finalize(root: Path, config: dict, config_hash: str, units_total: int,
             stage_counts: dict | None = None) -> dict:
    """Write manifest.json from the committed unit records; state is complete when all are in."""
    root = Path(root)
    records = load_unit_records(root)
    shards = [s for r in records for s in r["shards"]]
    per_split: dict[str, int] = {}
    for s in shards:
        if s["path"].startswith("data/"):  # kept rows only: rejected/ is no split (rows.rejected counts it)
            per_split[s["split"]] = per_split.get(s["split"], 0) + s["rows"]
    reasons: dict[str, int] = {}
    stages: dict[str, None] = {}  # ordered: the chain of the units' records
    rejections: dict[str, dict] = {}
    for r in records:
        for k, v in r["reject_reasons"].items():
            reasons[k] = reasons.get(k, 0) + v
        stages.update(dict.fromkeys(r.get("stages", [])))
        add_rejections(rejections, _stage_rejections(root, r))
    rows_in = sum(r["rows_in"] for r in records)
    chain = funnel(rows_in, stages, rejections)
    manifest = {
        "contract_version": CONTRACT_VERSION,
        "pipeline_version": __version__,
        "name": root.name,
        "config_hash": config_hash,
        "state": "complete" if len(records) == units_total else "partial",
        "units_total": units_total,
        "units_committed": len(records),
        "rows": {
            "in": rows_in,
            "kept": sum(r["rows_kept"] for r in records),
            "rejected": sum(r["rows_rejected"] for r in records),
            "per_split": dict(sorted(per_split.items())),
        },
        "reject_reasons": dict(sorted(reasons.items())),
        "stages": list(chain),
        "stage_counts": {**(stage_counts or {}), **chain},
        "shards": sorted(shards, key=lambda s: s["path"]),
        "config": config,
    }
    atomic_write_bytes(root / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode())
    return manifest


def _stage_rejections(root: Path, record: dict) -> dict[str, dict]:
    if "stage_rejections" in record:
        return record["stage_rejections"]
    # A unit committed by a writer that did not record them: count from its rejected rows.
    reasons = [x for s in record["shards"] if s["split"] == "rejected"
               for x in pq.read_table(shard_path(root, s["path"]), columns=[REJECT_COLUMN]).column(0).to_pylist()]
    return first_rejections(reasons)


def verify(root: Path) -> list[str]:
    """Check every shard in the manifest exists with its recorded sha256; returns problems."""
    root = Path(root)
    manifest = load_manifest(root)
    problems = []
    for s in manifest["shards"]:
        p = shard_path(root, s["path"])
        if not p.is_file():
            problems.append(f"missing shard {s['path']}")
        elif sha256_file(p) != s["sha256"]:
            problems.append(f"sha256 mismatch for {s['path']}")
    return problems
