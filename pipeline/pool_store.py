"""The image pool on disk: written once from a source as it streams, read back by id.

A run never holds the pool's images in memory: the source's rows go to ``images.bin`` one at a
time, mining reads only the small columns (and embeddings memory-mapped from a ``.npy``), and a
unit's rows fetch their images by byte range. Layout of ``<cache_dir>/pool/<key>/`` (the key
hashes the source config, the seed and the inputs' listing: names, sizes, mtimes):

- ``images.bin``: per kept image its bytes, then its extras (label, caption, path, scene) as JSON;
- ``index.parquet``: image_id, label, caption, offset, image_size, extra_size, sorted by id;
- ``report.json``: the source's accounting (seen, skipped with reasons, converted);
- ``embeddings-<embedder key>.npy``: float32 (n, d) in index order, written batch by batch.

Why not the images in Parquet: a unit's pairs point all over the pool, and a byte range reads
just the images a unit needs where a row group would read its neighbours too.
"""
from __future__ import annotations

import bisect
import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

FORMAT = "pool-v1"  # bump when the layout or what a source config yields changes
INDEX_SCHEMA = pa.schema([("image_id", pa.string()), ("label", pa.string()), ("caption", pa.string()),
                          ("offset", pa.int64()), ("image_size", pa.int64()), ("extra_size", pa.int64())])
Location = tuple[int, int, int]  # offset, image bytes, extras bytes


def _key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def inputs_fingerprint(path: str | Path | None) -> str | None:
    """A hash of the names, sizes and mtimes under ``path``: a changed folder is a new pool."""
    if path is None:
        return None
    root = Path(path)
    if root.is_file():
        st = root.stat()
        return _key(root.name, st.st_size, st.st_mtime_ns)
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for f in sorted(filenames):
            try:
                st = os.lstat(os.path.join(dirpath, f))
            except OSError:
                continue
            h.update(f"{os.path.relpath(os.path.join(dirpath, f), root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode(
                "utf-8", "backslashreplace"))
    return h.hexdigest()[:16]


def pool_dir(cache_dir: str | Path, source_cfg, seed: int) -> Path:
    """Where the pool of a source config lives under the cache."""
    cfg = source_cfg.model_dump(mode="json")
    return Path(cache_dir) / "pool" / _key(FORMAT, cfg, seed, inputs_fingerprint(getattr(source_cfg, "path", None)))


def read_records(images_bin: str | Path, at: dict[str, Location]) -> dict[str, dict]:
    """Source rows by id, read by byte range from ``images.bin`` (in file order: fewer seeks)."""
    out = {}
    with open(images_bin, "rb") as f:
        for image_id, (off, isize, esize) in sorted(at.items(), key=lambda kv: kv[1][0]):
            f.seek(off)
            data = f.read(isize + esize)
            out[image_id] = _record(image_id, data[:isize], data[isize:])
    return out


def _record(image_id: str, data: bytes, extra: bytes) -> dict:
    rest = json.loads(extra)
    return {"image_id": image_id, "image": {"bytes": data, "path": rest.pop("path", None)}, **rest}


@dataclass
class PoolStore:
    """An opened pool: the small columns in memory, the images on disk."""

    root: Path
    ids: list[str]
    labels: list[str | None]
    captions: list[str | None]
    locations: np.ndarray  # int64 (n, 3): offset, image bytes, extras bytes
    seen: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    converted: list[tuple[str, str]] = field(default_factory=list)

    @property
    def images_bin(self) -> Path:
        return self.root / "images.bin"

    def __len__(self) -> int:
        return len(self.ids)

    # -- writing ---------------------------------------------------------------------------------
    @classmethod
    def ensure(cls, root: str | Path, make_source: Callable[[], Iterable[dict]]) -> PoolStore:
        """Open the pool at ``root``, or stream a new source into it first (once: a rerun reopens
        it without building the source)."""
        root = Path(root)
        if not (root / "report.json").is_file():
            tmp = root.with_name(f".{root.name}.tmp-{os.getpid()}")
            shutil.rmtree(tmp, ignore_errors=True)
            cls._write(tmp, make_source())
            try:
                os.rename(tmp, root)  # report.json is written last: a folder under the final name is complete
            except OSError:  # another run finished it first: keep theirs
                shutil.rmtree(tmp, ignore_errors=True)
        return cls.open(root)

    @staticmethod
    def _write(root: Path, source: Iterable[dict]) -> None:
        root.mkdir(parents=True)
        cols: dict[str, list] = {n: [] for n in INDEX_SCHEMA.names}
        offset = 0
        with open(root / "images.bin", "wb") as f, pq.ParquetWriter(root / "index.parquet", INDEX_SCHEMA) as index:
            for row in source:  # one row at a time: the source's rows are never all in memory
                data = row["image"]["bytes"]
                extra = {k: v for k, v in row.items() if k not in ("image_id", "image")}
                extra["path"] = row["image"].get("path")
                blob = json.dumps(extra, ensure_ascii=False).encode()
                f.write(data)
                f.write(blob)
                for k, v in zip(INDEX_SCHEMA.names, (row["image_id"], row.get("label"), row.get("caption"),
                                                     offset, len(data), len(blob))):
                    cols[k].append(v)
                offset += len(data) + len(blob)
                if len(cols["image_id"]) >= 65536:
                    index.write_table(pa.table(cols, schema=INDEX_SCHEMA))
                    cols = {n: [] for n in INDEX_SCHEMA.names}
            index.write_table(pa.table(cols, schema=INDEX_SCHEMA))
        report = {"format": FORMAT, "seen": getattr(source, "seen", 0),
                  "skipped": list(getattr(source, "skipped", [])), "converted": list(getattr(source, "converted", []))}
        (root / "report.json").write_text(json.dumps(report, ensure_ascii=False))

    # -- reading ---------------------------------------------------------------------------------
    @classmethod
    def open(cls, root: str | Path) -> PoolStore:
        root = Path(root)
        report = json.loads((root / "report.json").read_text())
        t = pq.read_table(root / "index.parquet")
        loc = np.stack([t[c].to_numpy() for c in ("offset", "image_size", "extra_size")], axis=1) if t.num_rows \
            else np.zeros((0, 3), np.int64)
        return cls(root, t["image_id"].to_pylist(), t["label"].to_pylist(), t["caption"].to_pylist(),
                   loc.astype(np.int64), report["seen"], [tuple(s) for s in report["skipped"]],
                   [tuple(c) for c in report["converted"]])

    def locate(self, ids: Iterable[str]) -> dict[str, Location]:
        """Where each id's record lies in ``images.bin`` (ids are sorted: a binary search each)."""
        out = {}
        for i in ids:
            n = bisect.bisect_left(self.ids, i)
            if n == len(self.ids) or self.ids[n] != i:
                raise KeyError(f"image {i!r} is not in the pool at {self.root}")
            out[i] = tuple(int(v) for v in self.locations[n])
        return out

    def fetch(self, ids: Iterable[str]) -> dict[str, dict]:
        """Source rows (image bytes included) of a few ids."""
        return read_records(self.images_bin, self.locate(ids))

    def batches(self, size: int) -> Iterator[list[dict]]:
        """Every row in id order, ``size`` at a time, read sequentially."""
        with open(self.images_bin, "rb") as f:
            for s in range(0, len(self.ids), size):
                out = []
                for n in range(s, min(s + size, len(self.ids))):
                    _, isize, esize = self.locations[n]
                    data = f.read(int(isize + esize))
                    out.append(_record(self.ids[n], data[:isize], data[isize:]))
                yield out

    def embeddings(self, embedder_cfg, cache_dir: str | Path) -> np.ndarray:
        """Normalized float32 image embeddings (n, d) in id order, memory-mapped from a ``.npy``
        computed once per embedder config, batch by batch (never all images in memory)."""
        from pipeline.embedder import ClipEmbedder
        from pipeline.sources import decode_image

        path = self.root / f"embeddings-{_key(embedder_cfg.model_dump(mode='json'))}.npy"
        if not path.is_file():
            embedder = ClipEmbedder.from_config(embedder_cfg, cache_dir=cache_dir)
            tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.npy")
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(len(self), embedder.dim))
            at = 0
            for rows in self.batches(embedder.batch_size):
                out[at:at + len(rows)] = embedder.embed_images([decode_image(r["image"]) for r in rows])
                at += len(rows)
            out.flush()
            del out
            os.replace(tmp, path)
        return np.load(path, mmap_mode="r")
