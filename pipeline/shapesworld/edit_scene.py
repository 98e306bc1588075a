"""The ShapesWorld image editor: render the scene an edit instruction describes.

Hard negatives are built with it exactly: "make the red circle blue" applied to any scene gives
the true counterfactual image, or None when the instruction does not fit that scene.
"""
from __future__ import annotations

from PIL import Image

from .parse import apply_text
from .render import render
from .scene import Scene


def edit(scene: Scene, instruction_text: str, size: int = 64) -> tuple[Scene, Image.Image] | None:
    """(edited scene, its image) for an instruction on a scene; None when it cannot be applied."""
    edited = apply_text(instruction_text, scene)
    if edited is None:
        return None
    return edited, render(edited, size)
