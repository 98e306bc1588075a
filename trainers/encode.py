"""Images and composed queries to model features, in batches, decoded by DataLoader worker processes.

A value is anything ``trainers.data.decode_image`` reads: an HF Image struct, a PIL image, a path.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from trainers.data import decode_image, image_to_tensor


class ImageValues(Dataset):
    """Index -> normalized pixels (3,size,size); decoding runs in the loader's workers."""

    def __init__(self, values: Sequence[Any], size: int, root: Path | None = None):
        self.values, self.size, self.root = list(values), size, root

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, i: int) -> torch.Tensor:
        value = self.values[i]
        if isinstance(value, (str, Path)):
            value = {"bytes": None, "path": str(value)}
        return image_to_tensor(decode_image(value, self.root), self.size)


def pixel_batches(values: Sequence[Any], size: int, batch: int, workers: int = 0, root: Path | None = None):
    """Stacked pixel batches in order."""
    return DataLoader(ImageValues(values, size, root), batch_size=batch, num_workers=workers, shuffle=False)


def device_of(model) -> torch.device:
    return next(iter(model.parameters()), torch.empty(0)).device


def _cat(parts: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def encode_images(model, values: Sequence[Any], size: int, batch: int, workers: int = 0, root=None) -> dict[str, torch.Tensor]:
    """``model.encode_gallery`` over every value, batched."""
    dev = device_of(model)
    return _cat([model.encode_gallery(px.to(dev)) for px in pixel_batches(values, size, batch, workers, root)])


def encode_queries(model, references: Sequence[Any], texts: Sequence[str], tokenizer, size: int, batch: int,
                   max_len: int, workers: int = 0, root=None) -> dict[str, torch.Tensor]:
    """``model.encode_query`` over (reference image, text) pairs, batched."""
    dev, parts = device_of(model), []
    for i, px in enumerate(pixel_batches(references, size, batch, workers, root)):
        enc = tokenizer(list(texts[i * batch : (i + 1) * batch]), padding="max_length", truncation=True,
                        max_length=max_len, return_tensors="pt")
        parts.append(model.encode_query(px.to(dev), enc["input_ids"].to(dev), enc["attention_mask"].to(dev)))
    return _cat(parts)


def score_chunks(model, query: dict[str, torch.Tensor], gallery: dict[str, torch.Tensor], batch: int) -> torch.Tensor:
    """(Q, N) scores on the CPU, computed ``batch`` queries at a time."""
    n = len(next(iter(query.values())))
    return torch.cat([model.score({k: v[i : i + batch] for k, v in query.items()}, gallery).float().cpu()
                      for i in range(0, n, batch)])
