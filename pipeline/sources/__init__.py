"""Image sources: a folder, a Parquet table, CIRR / FashionIQ, or the built-in ShapesWorld.

Every source is an iterable of rows ``{"image_id", "image": {"bytes", "path"}, "label",
"caption"}`` in sorted id order, with ``skipped`` listing ``(id, reason)`` for unusable inputs.
"""
from __future__ import annotations

from .base import (IMAGE_EXTENSIONS, MIN_SIDE, Entry, Source, check_image_bytes, decode_image, normalize_image,
                   png_bytes)
from .cir_datasets import CirrSource, FashionIQSource
from .folder import FolderSource
from .parquet import ParquetSource

__all__ = ["IMAGE_EXTENSIONS", "MIN_SIDE", "normalize_image", "CirrSource", "Entry", "FashionIQSource", "FolderSource", "ParquetSource",
           "Source", "ShapesWorldSource", "check_image_bytes", "decode_image", "make_source", "png_bytes"]


def __getattr__(name):
    # ShapesWorld is imported on use: the other sources do not need the world package.
    if name == "ShapesWorldSource":
        from .shapesworld import ShapesWorldSource

        return ShapesWorldSource
    raise AttributeError(name)


def make_source(cfg, seed: int = 0) -> Source:
    """The source a ``SourceConfig`` names; per-kind options come from ``cfg.options`` if present."""
    from pipeline.config_mining import SourceOptions

    opt = getattr(cfg, "options", None) or SourceOptions()
    min_side = getattr(opt, "min_side", MIN_SIDE)
    if cfg.kind == "shapesworld":
        from .shapesworld import ShapesWorldSource

        w = cfg.shapesworld
        return ShapesWorldSource(image_size=w.image_size, families=w.families,
                                 variants_per_family=w.variants_per_family, max_objects=w.max_objects, seed=seed)
    if cfg.kind == "folder":
        return FolderSource(cfg.path, max_pixels=opt.max_pixels, min_side=min_side)
    if cfg.kind == "parquet":
        return ParquetSource(cfg.path, image_column=opt.image_column, id_column=opt.id_column,
                             label_column=opt.label_column, caption_column=opt.caption_column,
                             max_pixels=opt.max_pixels, min_side=min_side)
    if cfg.kind == "cirr":
        return CirrSource(cfg.path, split=opt.split, max_pixels=opt.max_pixels, min_side=min_side)
    if cfg.kind == "fashioniq":
        return FashionIQSource(cfg.path, split=opt.split, categories=opt.categories, max_pixels=opt.max_pixels,
                               min_side=min_side)
    raise ValueError(f"source.kind={cfg.kind!r}: allowed are shapesworld, folder, parquet, cirr, fashioniq")
