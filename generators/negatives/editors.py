"""Image editors for hard negatives: one interface, a batch of (image or scene, instruction, seed) in.

``ShapesWorldEditor`` renders the scene an instruction describes (exact); the diffusers
InstructPix2Pix editor for photos lives in generators/negatives/ip2p.py. ``make_editor`` (in stage.py, beside its one caller) picks one.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Protocol

SHAPESWORLD_EDITOR_ID = "shapesworld-renderer"


@dataclass(frozen=True)
class EditRequest:
    """One edit: the source image (HF Image struct) and/or its scene JSON, the instruction, a seed."""

    instruction: str
    image: dict | None = None
    scene: str | None = None
    seed: int = 0


@dataclass(frozen=True)
class EditResult:
    """The edited image (HF Image struct with PNG bytes) and, for ShapesWorld, its scene JSON."""

    image: dict
    scene: str | None = None


class Editor(Protocol):
    editor_id: str

    def edit_batch(self, requests: list[EditRequest]) -> list[EditResult | None]:
        """One result per request, None where the edit cannot be made."""


def png_struct(image) -> dict:
    """A PIL image as an HF Image struct with PNG bytes."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return {"bytes": buf.getvalue(), "path": None}


def image_side(image: dict) -> int:
    """The width of an HF Image struct's image, read from its header only."""
    from PIL import Image

    with Image.open(io.BytesIO(image["bytes"]) if image.get("bytes") else image["path"]) as im:
        return im.size[0]


class ShapesWorldEditor:
    """Exact edits: parse the instruction on the scene and render the result at the source's size."""

    editor_id = SHAPESWORLD_EDITOR_ID

    def __init__(self, image_size: int = 64):
        self.image_size = image_size

    def edit_batch(self, requests: list[EditRequest]) -> list[EditResult | None]:
        from pipeline.shapesworld import Scene, edit

        out: list[EditResult | None] = []
        for r in requests:
            if r.scene is None:
                out.append(None)
                continue
            size = image_side(r.image) if r.image else self.image_size
            done = edit(Scene.from_json(r.scene), r.instruction, size)
            out.append(None if done is None else EditResult(png_struct(done[1]), done[0].to_json()))
        return out
