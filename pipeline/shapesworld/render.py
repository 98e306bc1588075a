"""Draw a scene with Pillow: a cached background per setting, cached sprites pasted on top.

Decorations (stars, flakes, leaves) are seeded from the setting alone, not from the scene: two
scenes with the same setting share every background pixel, so an image pair differs exactly
where its modification text says. Objects are pasted after the background, so decorations can
never hide them. Same scene and size -> identical bytes.
"""
from __future__ import annotations

import math
import random
from functools import lru_cache

from PIL import Image, ImageDraw

from .scene import GRID, Scene

PALETTE = {
    "red": (220, 40, 40),
    "green": (35, 165, 65),
    "blue": (40, 90, 235),
    "yellow": (250, 205, 30),
    "purple": (150, 60, 210),
}
BACKGROUND = {
    "plain": (236, 234, 228),
    "night": (20, 24, 56),
    "snow": (196, 216, 238),
    "autumn": (226, 184, 128),
}
# A contrasting outline keeps every color readable on every background (yellow on snow,
# blue on night) and gives shapes a crisp edge at 64 px.
OUTLINE = {"plain": (30, 30, 30), "night": (240, 240, 245), "snow": (30, 30, 30), "autumn": (40, 25, 15)}
SIZE_FRACTION = {"small": 0.45, "large": 0.85}  # of a grid cell's side
SUPERSAMPLE = 4  # sprites are drawn 4x larger and downsampled, for smooth edges


def render(scene: Scene, size: int = 64, *, cache: bool = True) -> Image.Image:
    """The scene as a size x size RGB image; cache=False redraws everything (same pixels, slower)."""
    img = (background(scene.setting, size) if cache else _draw_background(scene.setting, size)).copy()
    for o in scene.objects:
        key = (o.shape, o.color, o.size, scene.setting, size)
        sprite, (x, y) = _sprite(*key) if cache else _draw_sprite(*key)
        x0, y0 = _cell_origin(o.row, o.col, size)
        img.paste(sprite, (x0 + x, y0 + y), sprite)
    return img


def _cell_origin(row: int, col: int, size: int) -> tuple[int, int]:
    return round(col * size / GRID), round(row * size / GRID)


@lru_cache(maxsize=64)
def background(setting: str, size: int) -> Image.Image:
    """The cached background of a setting (do not modify it: render copies it)."""
    return _draw_background(setting, size)


def _draw_background(setting: str, size: int) -> Image.Image:
    img = Image.new("RGB", (size, size), BACKGROUND[setting])
    d = ImageDraw.Draw(img)
    rng = random.Random(f"shapesworld-background:{setting}")
    s = size / 64  # decorations are laid out for 64 px and scaled
    if setting == "night":
        for _ in range(36):
            x, y, r = rng.random() * size, rng.random() * size, (0.4 + 0.5 * rng.random()) * s
            v = rng.randint(170, 255)
            d.ellipse([x - r, y - r, x + r, y + r], fill=(v, v, min(255, v + 20)))
    elif setting == "snow":
        d.rectangle([0, round(size * 0.88), size, size], fill=(244, 247, 252))
        for _ in range(45):
            x, y, r = rng.random() * size, rng.random() * size, (0.6 + 0.6 * rng.random()) * s
            d.ellipse([x - r, y - r, x + r, y + r], fill=(252, 253, 255))
    elif setting == "autumn":
        leaf_colors = [(200, 105, 30), (150, 85, 40), (215, 140, 45)]
        for _ in range(26):
            x, y = rng.random() * size, rng.random() * size
            w, h = (1.2 + rng.random()) * s, (0.7 + 0.5 * rng.random()) * s
            d.ellipse([x - w, y - h, x + w, y + h], fill=rng.choice(leaf_colors))
    return img


@lru_cache(maxsize=1024)
def _sprite(shape: str, color: str, size_name: str, setting: str, size: int):
    return _draw_sprite(shape, color, size_name, setting, size)


def _draw_sprite(shape: str, color: str, size_name: str, setting: str, size: int):
    """An RGBA sprite and its offset inside the cell."""
    cell = size / GRID
    px = max(3, round(SIZE_FRACTION[size_name] * cell))
    S = px * SUPERSAMPLE
    im = Image.new("RGBA", (S, S), (0, 0, 0, 0))
    d = ImageDraw.Draw(im)
    fill, line = PALETTE[color] + (255,), OUTLINE[setting] + (255,)
    width = max(1, round(SUPERSAMPLE * max(1.0, size / 64) * (0.8 if size_name == "small" else 1.0)))
    m = width / 2
    if shape == "circle":
        d.ellipse([m, m, S - 1 - m, S - 1 - m], fill=fill, outline=line, width=width)
    elif shape == "square":
        # Inset so a square does not look bigger than a circle of the same size.
        k = S * 0.08 + m
        d.rectangle([k, k, S - 1 - k, S - 1 - k], fill=fill, outline=line, width=width)
    elif shape == "triangle":
        d.polygon([(S / 2, m), (S - 1 - m, S - 1 - m), (m, S - 1 - m)], fill=fill, outline=line, width=width)
    elif shape == "star":
        R, c = S / 2 - m, S / 2
        pts = []
        for i in range(10):
            r = R if i % 2 == 0 else R * 0.45
            a = -math.pi / 2 + i * math.pi / 5
            pts.append((c + r * math.cos(a), c + 0.06 * S + r * math.sin(a)))
        d.polygon(pts, fill=fill, outline=line, width=width)
    else:
        raise ValueError(f"no sprite for shape {shape!r}")
    sprite = im.resize((px, px), Image.LANCZOS)
    offset = round((cell - px) / 2)
    return sprite, (offset, offset)
