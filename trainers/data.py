"""Triplet rows for training: streamed from a cirforge dataset with pyarrow, or from an in-memory list;
decoded and collated to tensors batch by batch.

Rows stay plain dicts (shard column names) until ``collate``; skipping rows on resume decodes nothing.
"""
from __future__ import annotations

import io
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import pyarrow.parquet as pq
import torch
from PIL import Image

from pipeline.schema import COLUMN_NAMES

# BLIP-2 / CLIP pixel statistics (the real vision towers were trained with them).
MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)
NEGATIVE_COLUMNS = ("neg_text_aligned_image", "neg_image_aligned_image")
TRAIN_COLUMNS = (
    "triplet_id", "reference_id", "target_id", "reference_image", "target_image",
    "modification_text", "reverse_text", *NEGATIVE_COLUMNS,
)
assert set(TRAIN_COLUMNS) <= set(COLUMN_NAMES), "trainers.data reads columns the shard contract lacks"

Row = dict[str, Any]


def decode_image(value: Any, root: Path | None = None) -> Image.Image | torch.Tensor:
    """An HF Image struct ``{"bytes", "path"}`` (bytes first, else a path, absolute or under ``root``),
    a PIL image, or an already normalized pixel tensor (3,H,W), passed through."""
    if torch.is_tensor(value):
        return value
    if isinstance(value, Image.Image):
        return value.convert("RGB")
    if value.get("bytes"):
        return Image.open(io.BytesIO(value["bytes"])).convert("RGB")
    path = Path(value["path"])
    if not path.is_absolute() and root is not None and (root / path).exists():
        path = root / path
    return Image.open(path).convert("RGB")


def image_to_tensor(img: Image.Image | torch.Tensor, size: int) -> torch.Tensor:
    """PIL image -> normalized float tensor (3,size,size); a tensor passes through unchanged."""
    if isinstance(img, torch.Tensor):
        return img
    img = img.convert("RGB")
    if img.size != (size, size):
        img = img.resize((size, size), Image.BICUBIC)
    arr = (np.asarray(img, dtype=np.float32) / 255.0 - MEAN) / STD
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


@dataclass
class TripletBatch:
    """A collated batch; ``neg_mask`` (B,2) and ``has_reverse`` (B,) mark which optional parts exist."""

    ids: list[str]
    reference: torch.Tensor
    target: torch.Tensor
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    reverse_ids: torch.Tensor
    reverse_mask: torch.Tensor
    has_reverse: torch.Tensor
    negatives: torch.Tensor
    neg_mask: torch.Tensor

    def __len__(self) -> int:
        return len(self.ids)

    def to(self, device: torch.device | str) -> "TripletBatch":
        """The same batch with every tensor on ``device``."""
        moved = {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in vars(self).items()}
        return TripletBatch(**moved)


def collate(rows: Sequence[Row], tokenizer, image_size: int, max_text_len: int = 32, root: Path | None = None) -> TripletBatch:
    """Decode images, tokenize texts; a missing negative becomes zeros with its mask off."""
    def pixels(values):
        return torch.stack([image_to_tensor(decode_image(v, root), image_size) for v in values])

    def tokens(texts):
        enc = tokenizer(list(texts), padding="max_length", truncation=True, max_length=max_text_len, return_tensors="pt")
        return enc["input_ids"], enc["attention_mask"]

    ids, mask = tokens(r["modification_text"] for r in rows)
    rev_ids, rev_mask = tokens(r.get("reverse_text") or "" for r in rows)
    negs = torch.zeros(len(rows), len(NEGATIVE_COLUMNS), 3, image_size, image_size)
    neg_mask = torch.zeros(len(rows), len(NEGATIVE_COLUMNS), dtype=torch.bool)
    for i, r in enumerate(rows):
        for k, col in enumerate(NEGATIVE_COLUMNS):
            if r.get(col) is not None:
                negs[i, k] = image_to_tensor(decode_image(r[col], root), image_size)
                neg_mask[i, k] = True
    return TripletBatch(
        ids=[str(r.get("triplet_id", i)) for i, r in enumerate(rows)],
        reference=pixels(r["reference_image"] for r in rows),
        target=pixels(r["target_image"] for r in rows),
        input_ids=ids, attention_mask=mask,
        reverse_ids=rev_ids, reverse_mask=rev_mask,
        has_reverse=torch.tensor([bool(r.get("reverse_text")) for r in rows]),
        negatives=negs, neg_mask=neg_mask,
    )


def _buffered_shuffle(rows: Iterable[Row], buffer: int, rng: random.Random) -> Iterator[Row]:
    held: list[Row] = []
    for row in rows:
        held.append(row)
        if len(held) >= buffer:
            yield held.pop(rng.randrange(len(held)))
    rng.shuffle(held)
    yield from held


def _chunks(rows: Iterable[Row], size: int) -> Iterator[list[Row]]:
    chunk: list[Row] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class ParquetTriplets:
    """Rows of ``<dataset>/data/<split>/*.parquet``, one row group in memory at a time."""

    def __init__(self, dataset_dir: str | Path, split: str = "train", columns: Sequence[str] = TRAIN_COLUMNS):
        self.root = Path(dataset_dir)
        self.files = sorted((self.root / "data" / split).glob("*.parquet"))
        if not self.files:
            raise FileNotFoundError(f"no shards under {self.root / 'data' / split}: is this a cirforge dataset folder?")
        self.columns = list(columns)
        self.units = [(f, g) for f in self.files for g in range(pq.ParquetFile(f).num_row_groups)]

    def __len__(self) -> int:
        return sum(pq.ParquetFile(f).metadata.num_rows for f in self.files)

    def rows(self, seed: int | None = None, epoch: int = 0, buffer: int = 256) -> Iterator[Row]:
        """All rows once; with a seed, row groups and rows are shuffled the same way for (seed, epoch)."""
        units = list(self.units)
        rng = random.Random(f"{seed}:{epoch}") if seed is not None else None
        if rng is not None:
            rng.shuffle(units)

        def read() -> Iterator[Row]:
            for path, group in units:
                table = pq.ParquetFile(path).read_row_group(group, columns=self.columns)
                yield from table.to_pylist()

        return _buffered_shuffle(read(), buffer, rng) if rng is not None else read()


class MemoryTriplets:
    """Rows held in memory (the annotated seed set); images may be PIL images or HF Image structs."""

    root = None

    def __init__(self, rows: Sequence[Row]):
        if not rows:
            raise ValueError("the seed set is empty: finetuning needs at least one triplet")
        self.data = list(rows)

    def __len__(self) -> int:
        return len(self.data)

    def rows(self, seed: int | None = None, epoch: int = 0, buffer: int = 256) -> Iterator[Row]:
        """All rows once, shuffled for (seed, epoch) when a seed is given."""
        order = list(range(len(self.data)))
        if seed is not None:
            random.Random(f"{seed}:{epoch}").shuffle(order)
        return (self.data[i] for i in order)


def row_batches(source, batch_size: int, seed: int | None = None, start_epoch: int = 0, buffer: int = 256
                ) -> Iterator[tuple[int, list[Row]]]:
    """Endless (epoch, rows) batches; a short last batch is dropped unless the whole source is smaller
    than one batch (every step then sees the same number of in-batch negatives)."""
    n = len(source)
    if n == 0:
        raise ValueError("no triplet rows to train on")
    epoch = start_epoch
    while True:
        for chunk in _chunks(source.rows(seed, epoch, buffer), batch_size):
            if len(chunk) == batch_size or n < batch_size:
                yield epoch, chunk
        epoch += 1


def write_rows(rows: list[dict], path: Path) -> None:
    """Rows (plain dicts) to one Parquet file, atomically: a reader never sees a partial file."""
    import pyarrow as pa

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(pa.Table.from_pylist(rows), tmp)
    os.replace(tmp, path)


def read_rows(path: Path) -> list[dict]:
    """A Parquet file written by ``write_rows`` back as a list of dicts."""
    return pq.read_table(path).to_pylist()


def training_images(seed_path: Path | None, synthetic_dir: Path, image_size: int):
    """What a held-out ShapesWorld benchmark must avoid: every image id and image digest in the seed set
    (rows written by ``write_rows``) and the shards, as the ``exclude`` of
    ``pipeline.shapesworld.sets.retrieval.shapesworld_triplets``."""
    import pyarrow.dataset as pads

    from pipeline.shapesworld.sets.retrieval import Seen, image_digest, row_image_ids

    seen = Seen(ids=row_image_ids(read_rows(seed_path)) if seed_path else (), image_size=image_size)
    cols = ["reference_id", "target_id", "neg_text_aligned_image", "neg_image_aligned_image"]
    for split in sorted(p.name for p in (synthetic_dir / "data").iterdir() if p.is_dir()):
        table = pads.dataset(synthetic_dir / "data" / split, format="parquet").to_table(columns=cols)
        for r in table.to_pylist():
            seen.ids.update((r["reference_id"], r["target_id"]))
            seen.digests.update(image_digest(r[c]) for c in cols[2:] if r[c] is not None and r[c].get("bytes"))
    return seen
