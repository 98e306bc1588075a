"""ShapesWorld scene graphs: a setting plus a few objects on a 3x3 grid.

A scene is the ground truth of an image. Two rules keep every text about it unambiguous:
one object per grid cell, and (color, shape) unique within a scene, so "the red circle"
always names exactly one object.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

SETTINGS = ("plain", "night", "snow", "autumn")
SHAPES = ("circle", "square", "triangle", "star")
# Picked so that each is far from every background and from each other (see render.py).
COLORS = ("red", "green", "blue", "yellow", "purple")
SIZES = ("small", "large")

GRID = 3
# Index = row * GRID + col; row 0 is the top.
POSITIONS = (
    "top left", "top", "top right",
    "left", "center", "right",
    "bottom left", "bottom", "bottom right",
)
CELLS = tuple((r, c) for r in range(GRID) for c in range(GRID))
MAX_OBJECTS = len(CELLS)

# The phrase a caption uses to place an object ("at the top left", "on the left", ...).
CAPTION_LOCATION = {
    "top left": "at the top left", "top": "at the top", "top right": "at the top right",
    "left": "on the left", "center": "in the center", "right": "on the right",
    "bottom left": "at the bottom left", "bottom": "at the bottom", "bottom right": "at the bottom right",
}


def position_name(row: int, col: int) -> str:
    """The name of a grid cell, e.g. (0, 0) -> "top left"."""
    return POSITIONS[row * GRID + col]


def position_cell(name: str) -> tuple[int, int]:
    """The (row, col) of a position name; ValueError for an unknown name."""
    try:
        i = POSITIONS.index(name)
    except ValueError:
        raise ValueError(f"unknown position {name!r}; expected one of {', '.join(POSITIONS)}") from None
    return divmod(i, GRID)


@dataclass(frozen=True, order=True)
class Obj:
    """One object: shape, color and size at grid cell (row, col)."""

    shape: str
    color: str
    size: str
    row: int
    col: int

    def __post_init__(self):
        for name, value, allowed in (("shape", self.shape, SHAPES), ("color", self.color, COLORS),
                                     ("size", self.size, SIZES)):
            if value not in allowed:
                raise ValueError(f"object {name} {value!r} is not one of {', '.join(allowed)}")
        if not (0 <= self.row < GRID and 0 <= self.col < GRID):
            raise ValueError(f"object cell ({self.row}, {self.col}) is outside the {GRID}x{GRID} grid")

    @property
    def cell(self) -> tuple[int, int]:
        return (self.row, self.col)

    @property
    def position(self) -> str:
        return position_name(self.row, self.col)

    def describe(self) -> str:
        """Noun phrase with an article, e.g. "a small red circle"."""
        return f"a {self.size} {self.color} {self.shape}"

    def to_dict(self) -> dict:
        return {"shape": self.shape, "color": self.color, "size": self.size, "row": self.row, "col": self.col}


@dataclass(frozen=True)
class Scene:
    """A setting and 1 to 9 objects, kept sorted by (row, col) so equal scenes compare and hash equal."""

    setting: str
    objects: tuple[Obj, ...] = field(default=())

    def __post_init__(self):
        if self.setting not in SETTINGS:
            raise ValueError(f"setting {self.setting!r} is not one of {', '.join(SETTINGS)}")
        objs = tuple(sorted(self.objects, key=lambda o: (o.row, o.col)))
        object.__setattr__(self, "objects", objs)
        if not objs:
            raise ValueError("a scene needs at least one object")
        cells = [o.cell for o in objs]
        if len(set(cells)) != len(cells):
            taken = sorted({position_name(*c) for c in cells if cells.count(c) > 1})
            raise ValueError(f"two objects in the same cell: {', '.join(taken)}")
        keys = [(o.color, o.shape) for o in objs]
        if len(set(keys)) != len(keys):
            dup = sorted({f"{c} {s}" for c, s in keys if keys.count((c, s)) > 1})
            raise ValueError(f"two objects are both a {', '.join(dup)}: color and shape must be unique in a scene")

    def at(self, cell: tuple[int, int]) -> Obj | None:
        """The object at a cell, or None when the cell is empty."""
        for o in self.objects:
            if o.cell == cell:
                return o
        return None

    def empty_cells(self) -> list[tuple[int, int]]:
        taken = {o.cell for o in self.objects}
        return [c for c in CELLS if c not in taken]

    def to_dict(self) -> dict:
        return {"setting": self.setting, "objects": [o.to_dict() for o in self.objects]}

    def to_json(self) -> str:
        """Compact JSON with sorted keys: the same scene always gives the same string."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict) -> Scene:
        return cls(d["setting"], tuple(Obj(**o) for o in d["objects"]))

    @classmethod
    def from_json(cls, text: str) -> Scene:
        """Inverse of to_json; ValueError for a malformed or invalid scene."""
        try:
            d = json.loads(text)
            return cls.from_dict(d)
        except (KeyError, TypeError, json.JSONDecodeError) as err:
            raise ValueError(f"not a ShapesWorld scene JSON: {err}") from None

    def caption(self) -> str:
        """Plain description, e.g. "a snow scene with a small red circle at the top left"."""
        parts = [f"{o.describe()} {CAPTION_LOCATION[o.position]}" for o in self.objects]
        listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
        article = "an" if self.setting[0] in "aeiou" else "a"
        return f"{article} {self.setting} scene with {listed}"


def scene_id(scene: Scene) -> str:
    """Stable 12-hex-digit hash of the scene's JSON (same on every machine and Python run)."""
    return hashlib.blake2b(scene.to_json().encode(), digest_size=6).hexdigest()


SCENE_COLUMNS = ("reference_scene", "target_scene")


def scenes_of(row: dict) -> tuple[Scene, Scene] | None:
    """(reference Scene, target Scene) of a ShapesWorld row, else None (a photo row, whose scene
    cells are absent: None, or NaN where Ray Data turned an all-None column into floats)."""
    from pipeline.stage import missing

    rs, ts = (row.get(c) for c in SCENE_COLUMNS)
    if missing(rs) or missing(ts) or not rs or not ts:
        return None
    return Scene.from_json(rs), Scene.from_json(ts)
