"""The modification-text language: one table of phrasings that the annotator writes from and
the parser reads with, so every annotator text parses by construction.

A template is a string of literal words and slots:
  {obj}      a reference to an existing object: "the [size] [color] (shape|object) [location]" or "it"
  {color} {shape} {size} {setting}   one vocabulary word
  {loc}      a location phrase: "(at|in|on) the <position> [corner]"
  {pos}      a destination: "the <position> [corner]"
Some templates fix a value instead of a slot ("enlarge {obj}" means size -> large).
"""
from __future__ import annotations

from .scene import CAPTION_LOCATION, COLORS, POSITIONS, SETTINGS, SHAPES, SIZES, position_name

# (edit kind, template, fixed values). Annotator and parser both read this table.
TEMPLATES: tuple[tuple[str, str, dict], ...] = (
    ("color", "make {obj} {color}", {}),
    ("color", "change the color of {obj} to {color}", {}),
    ("color", "{obj} should be {color}", {}),
    ("color", "turn {obj} {color}", {}),
    ("color", "paint {obj} {color}", {}),
    ("shape", "make {obj} a {shape}", {}),
    ("shape", "turn {obj} into a {shape}", {}),
    ("shape", "change {obj} into a {shape}", {}),
    ("shape", "change the shape of {obj} to a {shape}", {}),
    ("shape", "{obj} should be a {shape}", {}),
    ("size", "make {obj} {size}", {}),
    ("size", "{obj} should be {size}", {}),
    ("size", "change the size of {obj} to {size}", {}),
    ("size", "make {obj} bigger", {"size": "large"}),
    ("size", "make {obj} larger", {"size": "large"}),
    ("size", "make {obj} smaller", {"size": "small"}),
    ("size", "enlarge {obj}", {"size": "large"}),
    ("size", "shrink {obj}", {"size": "small"}),
    ("add", "add a {size} {color} {shape} {loc}", {}),
    ("add", "add a {size} {color} {shape} to {pos}", {}),
    ("add", "put a {size} {color} {shape} {loc}", {}),
    ("add", "place a {size} {color} {shape} {loc}", {}),
    ("add", "there should be a {size} {color} {shape} {loc}", {}),
    ("remove", "remove {obj}", {}),
    ("remove", "delete {obj}", {}),
    ("remove", "take away {obj}", {}),
    ("remove", "get rid of {obj}", {}),
    ("move", "move {obj} to {pos}", {}),
    ("move", "shift {obj} to {pos}", {}),
    ("move", "put {obj} {loc}", {}),
    ("move", "{obj} should be {loc}", {}),
    ("setting", "make it a {setting} scene", {}),
    ("setting", "change the setting to {setting}", {}),
    ("setting", "change the background to {setting}", {}),
    ("setting", "switch to a {setting} background", {}),
    ("setting", "use a {setting} background", {}),
)

# How two clauses are joined, as the annotator writes them ("{a}" and "{b}" are clauses).
JOINS = ("{a} and {b}", "{a}, and {b}", "{a}; also {b}", "{a}, then {b}", "{a} and then {b}",
         "{a}. Also, {b}", "{a}. Then {b}")
# The same joins as token sequences, as the parser reads them (after lowercasing).
CONNECTORS = (
    ("and",), (",", "and"), (";", "also"), (",", "then"), ("and", "then"), (".", "also", ","),
    (".", "then"), (";", "then"), (",", "also"), ("and", "also"), (".", "also"), (";",), (".",),
)

# Words a position may be written with: "center" also reads as "middle"; corners may add "corner".
POSITION_WORDS = {p: [tuple(p.split())] for p in POSITIONS}
POSITION_WORDS["center"].append(("middle",))
CORNERS = frozenset(p for p in POSITIONS if " " in p)
PREPOSITIONS = ("at", "in", "on")

# The location phrases the annotator writes, per position (the parser reads any preposition).
LOCATIONS = {
    "top left": ("at the top left", "in the top left corner", "in the top left"),
    "top": ("at the top",),
    "top right": ("at the top right", "in the top right corner", "in the top right"),
    "left": ("on the left",),
    "center": ("in the center", "in the middle", "at the center"),
    "right": ("on the right",),
    "bottom left": ("at the bottom left", "in the bottom left corner", "in the bottom left"),
    "bottom": ("at the bottom",),
    "bottom right": ("at the bottom right", "in the bottom right corner", "in the bottom right"),
}
DESTINATIONS = {
    p: (f"the {p}", f"the {p} corner") if p in CORNERS else (("the center", "the middle") if p == "center" else (f"the {p}",))
    for p in POSITIONS
}

OBJECT_NOUN = "object"
PRONOUN = "it"

VOCAB = {"color": COLORS, "shape": SHAPES, "size": SIZES, "setting": SETTINGS}


def compile_template(template: str) -> tuple[tuple[str, str], ...]:
    """Split a template into ("word", w) and ("slot", name) parts; punctuation is its own word."""
    parts = []
    for w in template.replace(",", " , ").split():
        if w.startswith("{") and w.endswith("}"):
            parts.append(("slot", w[1:-1]))
        else:
            parts.append(("word", w))
    return tuple(parts)


COMPILED = tuple((kind, compile_template(t), fixed, t) for kind, t, fixed in TEMPLATES)


def ref_matches(desc: dict, scene) -> list:
    """Objects of the scene that fit a reference's attributes (size, color, shape, cell)."""
    return [o for o in scene.objects
            if all(getattr(o, k) == v for k, v in desc.items() if k in ("size", "color", "shape"))
            and desc.get("cell", o.cell) == o.cell]


def ref_text(desc: dict) -> str:
    """How a reference reads, for error messages: "the small red circle at the top left"."""
    words = [desc[k] for k in ("size", "color") if k in desc] + [desc.get("shape", OBJECT_NOUN)]
    loc = f" {CAPTION_LOCATION[position_name(*desc['cell'])]}" if "cell" in desc else ""
    return "the " + " ".join(words) + loc
