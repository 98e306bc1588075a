"""One embedding pass for all filters: image and text embeddings as columns the scorers read.

The CLIP model loads once, in this stage (a GPU actor when configured), instead of once per filter.
The columns are working data: they are not in the shard contract and the writer leaves them out.
"""
from __future__ import annotations

import importlib
from typing import Any

import numpy as np

from filters.base import EMB_REFERENCE, EMB_REVERSE_DIRECTION, EMB_TARGET, EMB_TEXT, EMB_TEXT_DIRECTION
from pipeline.stage import Batch, Stage, to_list


def load_embedder(spec: Any):
    """An embedder from a spec: None, an object with embed_images/embed_texts, or
    ``{"factory": "module:callable", "kwargs": {...}}`` (picklable, for Ray workers)."""
    if spec is None or hasattr(spec, "embed_images"):
        return spec
    module, _, attr = spec["factory"].partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj(**spec.get("kwargs", {}))


def decode(image) -> "Image.Image":  # noqa: F821 - PIL imported lazily
    from pipeline.sources.base import decode_image

    return decode_image(image)


class EmbedColumnsStage(Stage):
    """Writes emb_reference, emb_target, emb_text and the text directions (text minus null text)."""

    name = "embed"
    reads = ("reference_image", "target_image", "modification_text")
    optional_reads = ("reverse_text",)
    writes = (EMB_REFERENCE, EMB_TARGET, EMB_TEXT, EMB_TEXT_DIRECTION, EMB_REVERSE_DIRECTION)
    batch_size = 64

    def __init__(self, embedder: Any = None, null_text: str = ""):
        self.embedder = load_embedder(embedder)
        self.null_text = null_text

    def process(self, batch: Batch) -> Batch:
        n = len(batch["modification_text"])
        if self.embedder is None:
            for c in self.writes:
                batch[c] = [None] * n
            return batch
        e = self.embedder
        refs = np.asarray(e.embed_images([decode(x) for x in to_list(batch["reference_image"])]), np.float32)
        tgts = np.asarray(e.embed_images([decode(x) for x in to_list(batch["target_image"])]), np.float32)
        fwd = [t or "" for t in to_list(batch["modification_text"])]
        rev = [t or "" for t in to_list(batch.get("reverse_text", [None] * n))]
        texts = np.asarray(e.embed_texts(fwd + rev + [self.null_text]), np.float32)
        null = texts[-1]
        batch[EMB_REFERENCE] = list(refs)
        batch[EMB_TARGET] = list(tgts)
        batch[EMB_TEXT] = list(texts[:n])
        batch[EMB_TEXT_DIRECTION] = list(texts[:n] - null)
        batch[EMB_REVERSE_DIRECTION] = [texts[n + i] - null if rev[i] else None for i in range(n)]
        return batch


class EmbedColumnsGPUStage(EmbedColumnsStage):
    """The same stage on a GPU actor (the embedder's device is its own config's business)."""

    num_gpus = 1.0
