"""A Parquet table (one file, or a folder of them, e.g. an HF-datasets export) with an image column.

The image column may be the HF Image struct ``{bytes, path}``, raw bytes, or a path string
(a path-only cell must be relative to the Parquet file's folder and stay inside it: an absolute
path or one that climbs out with ``..`` is skipped as ``outside_root``). Only the small columns are read for
the whole table; image bytes are read one row group at a time.
"""
from __future__ import annotations

import bisect
import json
from collections import OrderedDict
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from .base import MIN_SIDE, Entry, Source
from .cir_datasets import inside

LABEL_NAMES = ("label", "category", "class")
CAPTION_NAMES = ("caption", "text")


class ParquetSource(Source):
    """Rows of a Parquet file or folder; columns are named by options, or found by usual names."""

    kind = "parquet"

    def __init__(self, path: str | Path, image_column: str = "image", id_column: str | None = None,
                 label_column: str | None = None, caption_column: str | None = None,
                 max_pixels: int | None = None, cache_row_groups: int = 2, min_side: int = MIN_SIDE):
        super().__init__(max_pixels, min_side)
        self.path = Path(path)
        self.files = sorted(self.path.rglob("*.parquet")) if self.path.is_dir() else [self.path]
        if not self.files:
            raise ValueError(f"parquet source: no *.parquet files under {str(self.path)!r}")
        self.image_column = image_column
        schema = pq.read_schema(self.files[0])
        names = schema.names
        if image_column not in names:
            raise ValueError(f"parquet source: no image column {image_column!r} in {self.files[0].name}; "
                             f"columns are {names}: set the image column option")
        self.id_column = self._column(id_column, (), names, "id")
        self.label_column = self._column(label_column, LABEL_NAMES, names, "label")
        self.caption_column = self._column(caption_column, CAPTION_NAMES, names, "caption")
        self.label_names = _class_label_names(schema, self.label_column)
        self.cache_row_groups = cache_row_groups

    @staticmethod
    def _column(given: str | None, usual: tuple[str, ...], names: list[str], what: str) -> str | None:
        if given is not None:
            if given not in names:
                raise ValueError(f"parquet source: {what} column {given!r} not found; columns are {names}")
            return given
        return next((n for n in usual if n in names), None)

    def _ids(self, f: Path, table: pa.Table, start: int) -> list[str]:
        if self.id_column is not None:
            return [str(v) for v in table[self.id_column].to_pylist()]
        stem = f.relative_to(self.path).with_suffix("").as_posix() if self.path.is_dir() else f.stem
        return [f"{stem}:{start + i:08d}" for i in range(table.num_rows)]

    def entries(self) -> Iterator[Entry]:
        # 1. the small columns of every file, to sort rows by id
        index = []  # (image_id, file number, row number in file, label, caption)
        small = [c for c in (self.id_column, self.label_column, self.caption_column) if c]
        for fn, f in enumerate(self.files):
            t = pq.read_table(f, columns=small)
            ids = self._ids(f, t, 0)
            labels = t[self.label_column].to_pylist() if self.label_column else [None] * t.num_rows
            caps = t[self.caption_column].to_pylist() if self.caption_column else [None] * t.num_rows
            index.extend((i, fn, r, lab, cap) for r, (i, lab, cap) in enumerate(zip(ids, labels, caps)))
        index.sort(key=lambda x: (x[0], x[1], x[2]))
        # 2. image cells in that order, a few row groups held at a time
        groups: OrderedDict[tuple[int, int], list] = OrderedDict()
        files = [pq.ParquetFile(f) for f in self.files]
        starts = [_row_group_starts(pf) for pf in files]
        for image_id, fn, row, label, caption in index:
            g = _group_of(starts[fn], row)
            if (fn, g) not in groups:
                groups[(fn, g)] = files[fn].read_row_group(g, columns=[self.image_column])[self.image_column].to_pylist()
                while len(groups) > self.cache_row_groups:
                    groups.popitem(last=False)
            cell = groups[(fn, g)][row - starts[fn][g]]
            yield self._entry(image_id, cell, self.files[fn].parent, self._label(label), caption)

    def _label(self, value) -> str | None:
        if value is None:
            return None
        if self.label_names is not None and isinstance(value, int) and 0 <= value < len(self.label_names):
            return self.label_names[value]
        return str(value)

    def _entry(self, image_id: str, cell, folder: Path, label, caption) -> Entry:
        path = None
        data = None
        if isinstance(cell, dict):
            data, path = cell.get("bytes"), cell.get("path")
        elif isinstance(cell, (bytes, bytearray)):
            data = bytes(cell)
        elif isinstance(cell, str):
            path = cell
        if data is None and not path:
            return Entry(image_id, problem="missing: the image cell has neither bytes nor a path", label=label)
        if data is None:
            p = inside(folder, path)
            if p is None:
                return Entry(image_id, problem=f"outside_root: path {path!r} leaves the table's folder", label=label)
            if not p.is_file():
                return Entry(image_id, path=path, problem=f"missing: file {path!r} not found", label=label)
            path = p
        return Entry(image_id, data=data, path=path, label=label, caption=caption)


def _row_group_starts(pf: pq.ParquetFile) -> list[int]:
    starts, n = [], 0
    for g in range(pf.num_row_groups):
        starts.append(n)
        n += pf.metadata.row_group(g).num_rows
    return starts


def _group_of(starts: list[int], row: int) -> int:
    return bisect.bisect_right(starts, row) - 1


def _class_label_names(schema: pa.Schema, column: str | None) -> list[str] | None:
    """The names of an HF ``ClassLabel`` column, from the schema's ``huggingface`` metadata."""
    meta = (schema.metadata or {}).get(b"huggingface")
    if column is None or not meta:
        return None
    try:
        feat = json.loads(meta)["info"]["features"][column]
    except (ValueError, KeyError, TypeError):
        return None
    return feat.get("names") if isinstance(feat, dict) and feat.get("_type") == "ClassLabel" else None
