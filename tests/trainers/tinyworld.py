"""A tiny colour-change world for trainer tests: rendered shapes and triplet rows with FBCIR negatives."""
from __future__ import annotations

import io

from PIL import Image, ImageDraw

COLORS = {"red": (220, 30, 30), "green": (30, 180, 30), "blue": (30, 30, 220), "yellow": (230, 220, 20)}
SHAPES = ("square", "circle")
SIZE = 32


def render(shape: str, color: str) -> Image.Image:
    img = Image.new("RGB", (SIZE, SIZE), (128, 128, 128))
    d = ImageDraw.Draw(img)
    box = (6, 6, SIZE - 6, SIZE - 6)
    (d.rectangle if shape == "square" else d.ellipse)(box, fill=COLORS[color])
    return img


def png(img: Image.Image) -> dict:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return {"bytes": buf.getvalue(), "path": None}


def make_rows(n: int = 8, negatives: bool = True) -> list[dict]:
    """Triplets 'make it <color>': shape kept, color changed; negatives per FBCIR."""
    names = list(COLORS)
    rows = []
    for i in range(n):
        shape = SHAPES[i % 2]
        src, dst = names[i % 4], names[(i // 2 + 1 + i) % 4]
        if src == dst:
            dst = names[(names.index(src) + 1) % 4]
        other = SHAPES[(i + 1) % 2]
        rows.append({
            "triplet_id": f"t{i:03d}", "reference_id": f"{shape}-{src}", "target_id": f"{shape}-{dst}",
            "reference_image": png(render(shape, src)), "target_image": png(render(shape, dst)),
            "modification_text": f"make the {shape} {dst}", "reverse_text": f"make the {shape} {src}",
            # text-aligned: right color, wrong shape; image-aligned: the reference unchanged
            "neg_text_aligned_image": png(render(other, dst)) if negatives and i % 3 else None,
            "neg_image_aligned_image": png(render(shape, src)) if negatives else None,
            "scores": {}, "split": "train", "mining": "seed", "generator": "test", "config_hash": "0" * 16,
            "pipeline_version": "0", "seed": 0, "created_at": None,
        })
    return rows
