"""The sample-triplet figure of `cirforge inspect` and the quality report: one row per triplet,
its four images at a readable size and its texts beside them.

Positions are laid out in pixels (no tight_layout): matplotlib's automatic layout shrank the
thumbnails to make room for long texts placed under them.
"""
from __future__ import annotations

import textwrap
from pathlib import Path

IMAGE_COLUMNS = (("reference_image", "reference"), ("target_image", "target"),
                 ("neg_text_aligned_image", "neg: text-aligned"), ("neg_image_aligned_image", "neg: image-aligned"))
TEXT_COLUMNS = ("modification_text", "reverse_text", "neg_text_aligned_source", "neg_image_aligned_source")
SAMPLE_COLUMNS = ("triplet_id", *(c for c, _ in IMAGE_COLUMNS), *TEXT_COLUMNS)

THUMB, GAP, HEAD, TEXT_W, DPI = 144, 8, 26, 450, 100  # pixels
FONT_PT, LINE_PX, WRAP = 8.5, 16, 64  # 8.5 pt at 100 dpi: about 6.5 px a character, 16 px a line (x1.35)


def draw_samples(rows: list[dict], out_png: str | Path, reasons: bool = False) -> Path:
    """Save the figure of ``rows`` (image cells and texts; ``reject_reasons`` too when ``reasons``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    texts = [_texts(r, reasons) for r in rows]
    heights = [max(THUMB, LINE_PX * len(t)) for t in texts]
    text_x = GAP + len(IMAGE_COLUMNS) * (THUMB + GAP)
    width, height = text_x + TEXT_W, HEAD + sum(h + GAP for h in heights)
    fig = plt.figure(figsize=(width / DPI, height / DPI), dpi=DPI)

    def at(x: float, y: float) -> tuple[float, float]:  # pixels from the top left -> figure fraction
        return x / width, 1 - y / height

    for j, (_, title) in enumerate(IMAGE_COLUMNS):
        fig.text(*at(GAP + j * (THUMB + GAP) + THUMB / 2, HEAD / 2), title, ha="center", va="center", fontsize=9)
    fig.text(*at(text_x, HEAD / 2), "texts", ha="left", va="center", fontsize=9)
    y = HEAD
    for row, lines, h in zip(rows, texts, heights):
        for j, (col, _) in enumerate(IMAGE_COLUMNS):
            x0, y0 = at(GAP + j * (THUMB + GAP), y + THUMB)
            ax = fig.add_axes((x0, y0, THUMB / width, THUMB / height))
            ax.axis("off")
            img = _thumbnail(row.get(col))
            if img is None:
                ax.text(0.5, 0.5, "(none)", ha="center", va="center", fontsize=8, transform=ax.transAxes)
            else:
                ax.imshow(img, interpolation="nearest")
        fig.text(*at(text_x, y), "\n".join(lines), ha="left", va="top", fontsize=FONT_PT, linespacing=1.35)
        y += h + GAP
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=DPI)
    plt.close(fig)
    return out_png


def _texts(row: dict, reasons: bool) -> list[str]:
    """The wrapped lines beside a triplet: both texts, where the negatives came from, why rejected."""
    parts = [f"forward: {row.get('modification_text') or '-'}", f"reverse: {row.get('reverse_text') or '-'}"]
    negs = [f"{k}-aligned {row[f'neg_{k}_aligned_source']}" for k in ("text", "image")
            if row.get(f"neg_{k}_aligned_source")]
    if negs:
        parts.append("negatives: " + ", ".join(negs))
    if reasons:
        parts.append("rejected: " + (", ".join(row.get("reject_reasons") or []) or "-"))
    return [line for p in parts for line in textwrap.wrap(p, WRAP, subsequent_indent="  ")]


def _thumbnail(cell: dict | None):
    """The image scaled to fit THUMB (nearest when enlarging: rendered scenes stay sharp), or None."""
    from PIL import Image

    from pipeline.sources import decode_image

    if not cell or (cell.get("bytes") is None and not (cell.get("path") and Path(cell["path"]).is_file())):
        return None
    img = decode_image(cell)
    scale = THUMB / max(img.size)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    return img.resize(size, Image.NEAREST if scale >= 1 else Image.LANCZOS)
