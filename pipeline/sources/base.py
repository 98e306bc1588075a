"""The source interface: rows of images in sorted id order, bad inputs reported with a reason.

A source yields ``{"image_id", "image": {"bytes", "path"}, "label", "caption"}`` (the image in the
HF ``datasets`` Image layout) sorted by ``image_id``. An input that cannot be used lands in
``skipped`` as ``(id_or_path, "kind: detail")``; after a full pass ``seen`` = rows yielded + ``len(skipped)``.

What is skipped (kind): ``empty`` (zero bytes), ``not_image`` (Pillow cannot identify it),
``corrupt`` (truncated or damaged), ``too_large`` (decompression bomb guard), ``too_small`` (a
side below ``min_side``), ``duplicate_id``, ``duplicate_image`` (the same bytes as an earlier
input), ``missing`` / ``unreadable`` (no file, a symlink loop), ``not_regular`` (a FIFO, socket,
device or directory with an image name: never opened for reading, so a FIFO cannot hang the run),
``outside_root`` (a path or link that leaves the source's root), and ``missing_key`` (an
annotation record without a needed key).

What is converted, not skipped: CMYK, 16-bit, alpha (RGBA, LA, transparent palette), palette and
other non-RGB modes, and EXIF-rotated images become upright 8-bit RGB PNG bytes (alpha composited
on white); ``converted`` lists ``(id, what)`` for them. A multi-frame image (multi-page TIFF,
animated GIF / WebP / PNG) keeps its first frame, converted with the note
``multi-frame: first of N frames kept``. ``decode_image`` applies the same normalization to any
image cell (Pillow opens the first frame), so a path-only shard decodes to the same pixels.
"""
from __future__ import annotations

import hashlib
import io
import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterator

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
MIN_SIDE = 8  # default: images with a side below this are skipped as too_small
PLAIN_MODES = ("RGB", "L")  # stored as given; every other mode is normalized to RGB
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
ORIENTATION_TAG = 0x0112


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


def open_checked(data: bytes, max_pixels: int | None = None,
                 min_side: int = 1) -> tuple[str | None, Image.Image | None]:
    """``(None, fully decoded image)`` or ``("kind: detail", None)`` for bytes that are no usable image."""
    if not data:
        return "empty: zero-byte file", None
    limit = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    try:
        # Pillow warns past MAX_IMAGE_PIXELS and raises past twice that: both become a skip.
        # (catch_warnings is process-global; a stage decodes one image at a time per process.)
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            w, h = im.size
            if limit and w * h > limit:
                return f"too_large: {w}x{h} pixels exceeds the limit of {limit} (decompression bomb guard)", None
            if min(w, h) < min_side:
                return f"too_small: {w}x{h} pixels, a side below the minimum of {min_side}", None
            im.load()
            if getattr(im, "n_frames", 1) > 1:  # counted here: a damaged later frame is a corrupt file
                im.seek(0)
                im.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        return f"too_large: {err}", None
    except UnidentifiedImageError:
        return "not_image: Pillow cannot identify the bytes as an image", None
    except Exception as err:  # noqa: BLE001 - corrupt files raise OSError, SyntaxError, struct.error, ...
        return f"corrupt: {type(err).__name__}: {err}", None
    return None, im


_FILE_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
               (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def not_regular(mode: int) -> str | None:
    """``"not_regular: a FIFO (named pipe)"`` (etc.) for a stat mode that is no regular file, else None."""
    if stat.S_ISREG(mode):
        return None
    kind = next((name for test, name in _FILE_KINDS if test(mode)), "not a regular file")
    return f"not_regular: {kind} with an image name; only regular files are read"


def read_regular(path: Path | str) -> tuple[str | None, bytes | None]:
    """``(None, bytes)`` of a regular file, else ``("kind: detail", None)``; never blocks on a FIFO.

    Checked before opening (opening a device can have effects) and again on the open descriptor,
    which is opened non-blocking, so a file swapped for a FIFO in between cannot hang the read."""
    try:
        why = not_regular(os.stat(path).st_mode)
        if why:
            return why, None
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as err:
        return f"unreadable: {err.strerror or err}", None
    with os.fdopen(fd, "rb") as f:
        why = not_regular(os.fstat(fd).st_mode)
        return (why, None) if why else (None, f.read())


def check_image_bytes(data: bytes, max_pixels: int | None = None, min_side: int = 1) -> str | None:
    """None when Pillow fully decodes ``data``; else a short ``"kind: detail"`` reason."""
    return open_checked(data, max_pixels, min_side)[0]


def _orientation(im: Image.Image) -> int:
    try:
        return int(im.getexif().get(ORIENTATION_TAG, 1) or 1)
    except Exception:  # noqa: BLE001 - a damaged EXIF block is ignored, like viewers do
        return 1


def needs_normalizing(im: Image.Image) -> str | None:
    """Why ``im`` is not stored as given (``"mode CMYK"``, ``"EXIF orientation 6"``), or None."""
    why = []
    if im.mode not in PLAIN_MODES or "transparency" in im.info:
        why.append(f"mode {im.mode}" + (" with transparency" if "transparency" in im.info else ""))
    if _orientation(im) != 1:
        why.append(f"EXIF orientation {_orientation(im)}")
    return ", ".join(why) or None


def frames_note(im: Image.Image) -> str | None:
    """``"multi-frame: first of N frames kept"`` for a multi-page / animated image, else None."""
    n = getattr(im, "n_frames", 1)
    return f"multi-frame: first of {n} frames kept" if n > 1 else None


def normalize_image(im: Image.Image) -> Image.Image:
    """Upright 8-bit RGB: EXIF rotation applied, 16-bit scaled (not clipped), alpha over white."""
    if _orientation(im) != 1:
        im = ImageOps.exif_transpose(im)
    if im.mode in SIXTEEN_BIT_MODES:
        # Pillow's convert() clips 16-bit values at 255 (nearly all white): scale 0..65535 to 0..255.
        arr = np.asarray(im, dtype=np.float64)
        im = Image.fromarray(np.clip(np.rint(arr / 257.0), 0, 255).astype(np.uint8), "L")
    elif im.mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        im = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        bg.alpha_composite(rgba)
        im = bg
    return im if im.mode == "RGB" else im.convert("RGB")


def png_bytes(image: Image.Image) -> bytes:
    """PNG bytes of a rendered image (deterministic for the same pixels)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def decode_image(image: dict | bytes | Image.Image, mode: str = "RGB") -> Image.Image:
    """A PIL image from an HF Image struct ({bytes, path}), raw bytes, or a PIL image, normalized
    like the sources store it (EXIF rotation, 16-bit scaling, alpha over white)."""
    if isinstance(image, dict):
        data = image.get("bytes")
        image = Image.open(image["path"]) if data is None else data
    if not isinstance(image, Image.Image):
        image = Image.open(io.BytesIO(image))
    image = normalize_image(image)
    return image if mode == "RGB" else image.convert(mode)


def _utf8_or_none(path: Path | str | None) -> str | None:
    """The path as a string the Parquet writer can store (UTF-8), else None (bytes stay embedded)."""
    if path is None:
        return None
    s = str(path)
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return s


class Source:
    """Base class: subclasses yield ``Entry`` objects sorted by id from ``entries()``."""

    kind: ClassVar[str] = "source"
    dedup_images: ClassVar[bool] = True  # skip an input whose bytes equal an earlier one's

    def __init__(self, max_pixels: int | None = None, min_side: int = MIN_SIDE):
        self.max_pixels = max_pixels
        self.min_side = min_side
        self.skipped: list[tuple[str, str]] = []
        self.converted: list[tuple[str, str]] = []
        self.seen = 0

    def entries(self) -> Iterator[Entry]:  # pragma: no cover - the hook subclasses fill
        raise NotImplementedError

    def __iter__(self) -> Iterator[dict]:
        self.skipped, self.converted, self.seen = [], [], 0
        self._digests: dict[bytes, str] = {}
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
                yield row

    def _skip(self, e: Entry, reason: str) -> None:
        self.skipped.append((e.image_id, reason))

    def _load(self, e: Entry) -> dict | None:
        if e.problem:
            self._skip(e, e.problem)
            return None
        data = e.data
        if data is None:
            reason, data = read_regular(e.path)
            if reason:
                self._skip(e, reason)
                return None
        if not e.verified:
            reason, im = open_checked(data, self.max_pixels, self.min_side)
            if reason:
                self._skip(e, reason)
                return None
        if self.dedup_images:
            digest = hashlib.sha256(data).digest()[:16]
            first = self._digests.setdefault(digest, e.image_id)
            if first != e.image_id:
                self._skip(e, f"duplicate_image: the same bytes as {first!r}")
                return None
        if not e.verified:
            why = [w for w in (frames_note(im), needs_normalizing(im)) if w]
            if why:
                data = png_bytes(normalize_image(im))
                self.converted.append((e.image_id, f"{', '.join(why)} -> RGB PNG"))
        row = {"image_id": e.image_id, "image": {"bytes": data, "path": _utf8_or_none(e.path)},
               "label": e.label, "caption": e.caption}
        if e.extra:
            row.update(e.extra)
        return row
