"""ShapesWorld: the embedded procedural world and the ground truth of cirforge.

Scenes (scene.py) render to images (render.py); edits (edits.py) change them; the annotator
(annotate.py) writes modification texts that the parser (parse.py) reads back exactly, both
from one phrasing table (language.py); world.py makes the image pool and pairs; edit_scene.py
renders the scene an instruction describes.
"""
from .annotate import annotate, describe_edits
from .edit_scene import edit
from .edits import EDIT_KINDS, Edit, apply_edit, apply_edits, diff, diff_all, random_edit
from .parse import ParseError, apply_text, parse
from .render import render
from .scene import (CELLS, COLORS, GRID, MAX_OBJECTS, POSITIONS, SETTINGS, SHAPES, SIZES, Obj, Scene,
                    position_cell, position_name, scene_id)
from .world import ShapesWorld

__all__ = [
    "CELLS", "COLORS", "EDIT_KINDS", "GRID", "MAX_OBJECTS", "POSITIONS", "SETTINGS", "SHAPES", "SIZES",
    "Edit", "Obj", "ParseError", "Scene", "ShapesWorld",
    "annotate", "apply_edit", "apply_edits", "apply_text", "describe_edits", "diff",
    "diff_all", "edit", "parse", "position_cell", "position_name", "random_edit", "render", "scene_id",
]
