"""The source interface: rows of images in sorted id order, bad inputs reported with a reason.

A source yields ``{"image_id", "image": {"bytes", "path"}, "label", "caption"}`` (the image in the
HF ``datasets`` Image layout) sorted by ``image_id``. An input that cannot be used (empty file,
not an image, truncated, a decompression bomb, missing, duplicate id) lands in ``skipped`` as
``(id_or_path, reason)``; after a full pass ``seen == yielded + len(skipped)``.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterator

from PIL import Image, UnidentifiedImageError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})


@dataclass
class Entry:
    """One candidate input: its id, and either its bytes, a file to read, or a known problem."""

    image_id: str
    data: bytes | None = None
    path: Path | str | None = None
    label: str | None = None
    caption: str | None = None
    problem: str | None = None
    extra: dict[str, Any] | None = None
    verified: bool = False  # rendered here (PNG we encoded): no need to decode it again


def check_image_bytes(data: bytes, max_pixels: int | None = None) -> str | None:
    """None when Pillow fully decodes ``data``; else a short ``"kind: detail"`` reason."""
    if not data:
        return "empty: zero-byte file"
    limit = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    try:
        # Pillow warns past MAX_IMAGE_PIXELS and raises past twice that: both become a skip.
        # (catch_warnings is process-global; a stage decodes one image at a time per process.)
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                w, h = im.size
                if limit and w * h > limit:
                    return f"too_large: {w}x{h} pixels exceeds the limit of {limit} (decompression bomb guard)"
                im.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        return f"too_large: {err}"
    except UnidentifiedImageError:
        return "not_image: Pillow cannot identify the bytes as an image"
    except Exception as err:  # noqa: BLE001 - corrupt files raise OSError, SyntaxError, struct.error, ...
        return f"corrupt: {type(err).__name__}: {err}"
    return None


def png_bytes(image: Image.Image) -> bytes:
    """PNG bytes of a rendered image (deterministic for the same pixels)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def decode_image(image: dict | bytes | Image.Image, mode: str = "RGB") -> Image.Image:
    """A PIL image from an HF Image struct ({bytes, path}), raw bytes, or a PIL image."""
    if isinstance(image, Image.Image):
        return image.convert(mode)
    if isinstance(image, dict):
        data = image.get("bytes")
        if data is None:
            return Image.open(image["path"]).convert(mode)
        image = data
    return Image.open(io.BytesIO(image)).convert(mode)


class Source:
    """Base class: subclasses yield ``Entry`` objects sorted by id from ``entries()``."""

    kind: ClassVar[str] = "source"

    def __init__(self, max_pixels: int | None = None):
        self.max_pixels = max_pixels
        self.skipped: list[tuple[str, str]] = []
        self.seen = 0
        self.yielded = 0

    def entries(self) -> Iterator[Entry]:  # pragma: no cover - the hook subclasses fill
        raise NotImplementedError

    def __iter__(self) -> Iterator[dict]:
        self.skipped, self.seen, self.yielded = [], 0, 0
        last: str | None = None
        for e in self.entries():
            self.seen += 1
            if last is not None and e.image_id < last:
                raise RuntimeError(f"{type(self).__name__} yielded {e.image_id!r} after {last!r}: ids must be sorted")
            if e.image_id == last:
                self._skip(e, "duplicate_id: an earlier input has the same image_id")
                continue
            last = e.image_id
            row = self._load(e)
            if row is not None:
                self.yielded += 1
                yield row

    def _skip(self, e: Entry, reason: str) -> None:
        self.skipped.append((e.image_id, reason))

    def _load(self, e: Entry) -> dict | None:
        if e.problem:
            self._skip(e, e.problem)
            return None
        data = e.data
        if data is None:
            try:
                data = Path(e.path).read_bytes()
            except OSError as err:
                self._skip(e, f"unreadable: {err.strerror or err}")
                return None
        if not e.verified:
            reason = check_image_bytes(data, self.max_pixels)
            if reason:
                self._skip(e, reason)
                return None
        row = {"image_id": e.image_id,
               "image": {"bytes": data, "path": str(e.path) if e.path is not None else None},
               "label": e.label, "caption": e.caption}
        if e.extra:
            row.update(e.extra)
        return row

    @property
    def counts(self) -> dict[str, int]:
        """What the last full pass saw, yielded and skipped."""
        return {"seen": self.seen, "yielded": self.yielded, "skipped": len(self.skipped)}
