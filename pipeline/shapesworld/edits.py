"""Edits on scenes: apply them, find the minimal edit list between two scenes, sample one.

Edits apply in order; an object edit names its object by the cell it occupies at that moment,
so a list like [move (0,0)->(1,1), color (1,1)->blue] is read step by step.
"""
from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, replace

from .scene import CELLS, COLORS, MAX_OBJECTS, SETTINGS, SHAPES, SIZES, Obj, Scene, position_name

EDIT_KINDS = ("color", "shape", "size", "add", "remove", "move", "setting")
_ATTR_VALUES = {"color": COLORS, "shape": SHAPES, "size": SIZES}


@dataclass(frozen=True)
class Edit:
    """One change: kind in EDIT_KINDS; `cell` is the edited object's cell before the edit,
    `value` the new color/shape/size/setting, `to` a move's destination, `obj` an added object."""

    kind: str
    cell: tuple[int, int] | None = None
    value: str | None = None
    to: tuple[int, int] | None = None
    obj: Obj | None = None

    def __post_init__(self):
        k = self.kind
        if k not in EDIT_KINDS:
            raise ValueError(f"edit kind {k!r} is not one of {', '.join(EDIT_KINDS)}")
        need = {"color": ("cell", "value"), "shape": ("cell", "value"), "size": ("cell", "value"),
                "add": ("obj",), "remove": ("cell",), "move": ("cell", "to"), "setting": ("value",)}[k]
        for name in ("cell", "value", "to", "obj"):
            given = getattr(self, name) is not None
            if given != (name in need):
                raise ValueError(f"a {k} edit {'needs' if name in need else 'takes no'} {name!r}")
        for name in ("cell", "to"):
            c = getattr(self, name)
            if c is not None:
                object.__setattr__(self, name, tuple(c))
                if self.__dict__[name] not in CELLS:
                    raise ValueError(f"{k} edit: {name} {c} is not a grid cell")
        allowed = _ATTR_VALUES.get(k) or (SETTINGS if k == "setting" else None)
        if allowed and self.value not in allowed:
            raise ValueError(f"{k} edit: {self.value!r} is not one of {', '.join(allowed)}")

    def result_cell(self) -> tuple[int, int] | None:
        """Where the edited object is after the edit (None for remove and setting)."""
        if self.kind == "move":
            return self.to
        if self.kind == "add":
            return self.obj.cell
        if self.kind in ("remove", "setting"):
            return None
        return self.cell


def apply_edit(scene: Scene, edit: Edit) -> Scene:
    """The scene after one edit; ValueError saying why when it does not apply."""
    if edit.kind == "setting":
        if edit.value == scene.setting:
            raise ValueError(f"the setting is already {edit.value}")
        return Scene(edit.value, scene.objects)
    if edit.kind == "add":
        o = edit.obj
        if scene.at(o.cell) is not None:
            raise ValueError(f"cannot add {o.describe()} at the {o.position}: the cell is taken")
        return _rebuild(scene, scene.objects + (o,), f"cannot add {o.describe()}")
    target = scene.at(edit.cell)
    if target is None:
        raise ValueError(f"{edit.kind} edit: no object at the {position_name(*edit.cell)}")
    others = tuple(o for o in scene.objects if o is not target)
    name = f"the {target.color} {target.shape}"
    if edit.kind == "remove":
        if not others:
            raise ValueError(f"cannot remove {name}: it is the only object")
        return Scene(scene.setting, others)
    if edit.kind == "move":
        if edit.to == target.cell:
            raise ValueError(f"{name} is already at the {target.position}")
        if scene.at(edit.to) is not None:
            raise ValueError(f"cannot move {name} to the {position_name(*edit.to)}: the cell is taken")
        return Scene(scene.setting, others + (replace(target, row=edit.to[0], col=edit.to[1]),))
    if getattr(target, edit.kind) == edit.value:
        raise ValueError(f"{name} is already {edit.value}")
    changed = replace(target, **{edit.kind: edit.value})
    return _rebuild(scene, others + (changed,), f"cannot make {name} {edit.value}")


def _rebuild(scene: Scene, objects: tuple[Obj, ...], what: str) -> Scene:
    try:
        return Scene(scene.setting, objects)
    except ValueError as err:
        raise ValueError(f"{what}: {err}") from None


def apply_edits(scene: Scene, edits: list[Edit]) -> Scene:
    """Apply edits in order; ValueError when one does not apply or would break the scene rules."""
    for e in edits:
        scene = apply_edit(scene, e)
    return scene


# --- diff -----------------------------------------------------------------------------------

def _pair_cost(a: Obj, b: Obj) -> int:
    return (a.cell != b.cell) + (a.color != b.color) + (a.shape != b.shape) + (a.size != b.size)


def _matchings(A: tuple[Obj, ...], B: tuple[Obj, ...], budget: int):
    """Every way to pair objects of A with objects of B (or leave them unpaired) within budget."""
    cost = [[_pair_cost(a, b) for b in B] for a in A]
    out = []

    def rec(i, used, spent, pairs):
        left_b = len(B) - len(used)
        # Each B object still unpaired beyond what the remaining A objects can take costs an add.
        if spent + max(0, left_b - (len(A) - i)) > budget:
            return
        if i == len(A):
            out.append((spent + left_b, pairs, [b for j, b in enumerate(B) if j not in used]))
            return
        for j in range(len(B)):
            if j not in used and spent + cost[i][j] <= budget:
                rec(i + 1, used | {j}, spent + cost[i][j], pairs + [(A[i], B[j])])
        rec(i + 1, used, spent + 1, pairs + [(A[i], None)])

    rec(0, frozenset(), 0, [])
    return out


def _intents(a: Scene, b: Scene, pairs, added) -> list[tuple]:
    """Order-free description of one matching: what happens to each object, named by its cell in a."""
    out = []
    if a.setting != b.setting:
        out.append(("setting", None, b.setting))
    for oa, ob in pairs:
        if ob is None:
            out.append(("remove", oa.cell, None))
            continue
        for attr in ("color", "shape", "size"):
            if getattr(oa, attr) != getattr(ob, attr):
                out.append((attr, oa.cell, getattr(ob, attr)))
        if oa.cell != ob.cell:
            out.append(("move", oa.cell, ob.cell))
    for ob in added:
        out.append(("add", None, ob))
    return out


def _concrete(order) -> list[Edit]:
    """Turn intents into Edits, following each object's cell through earlier moves."""
    where: dict = {}
    edits = []
    for kind, cell, payload in order:
        now = where.get(cell, cell)
        if kind == "setting":
            edits.append(Edit("setting", value=payload))
        elif kind == "add":
            edits.append(Edit("add", obj=payload))
        elif kind == "remove":
            edits.append(Edit("remove", cell=now))
        elif kind == "move":
            edits.append(Edit("move", cell=now, to=payload))
            where[cell] = payload
        else:
            edits.append(Edit(kind, cell=now, value=payload))
    return edits


def diff_all(a: Scene, b: Scene, max_edits: int = 2) -> list[list[Edit]]:
    """Every valid ordered edit list of minimal length turning a into b ([] if more than max_edits)."""
    if a == b:
        return [[]]
    budget = max_edits - (a.setting != b.setting)
    if budget < 0:
        return []
    found: dict[int, list[list[Edit]]] = {}
    # Prefer keeping objects (attribute edits, moves) over remove+add when both cost the same.
    for spent, pairs, added in sorted(_matchings(a.objects, b.objects, budget),
                                      key=lambda m: (m[0], len(m[2]), repr(m[1]))):
        total = spent + (a.setting != b.setting)
        if found and total > min(found):
            break
        intents = sorted(_intents(a, b, pairs, added), key=lambda t: (EDIT_KINDS.index(t[0]), repr(t)))
        for order in itertools.permutations(intents):
            edits = _concrete(order)
            try:
                if apply_edits(a, edits) == b and edits not in found.get(total, []):
                    found.setdefault(total, []).append(edits)
            except ValueError:
                continue
    return found[min(found)] if found else []


def diff(a: Scene, b: Scene, max_edits: int = 2) -> list[Edit] | None:
    """The minimal edit list turning a into b, or None when more than max_edits are needed."""
    options = diff_all(a, b, max_edits)
    return options[0] if options else None


# --- sampling -------------------------------------------------------------------------------

def random_edit(scene: Scene, rng: random.Random, max_objects: int = MAX_OBJECTS) -> Edit:
    """A random edit that applies to the scene (never a no-op; adds stay within max_objects)."""
    objs = scene.objects
    taken = {(o.color, o.shape) for o in objs}
    empty = scene.empty_cells()
    options: dict[str, list] = {
        "color": [(o, c) for o in objs for c in COLORS if c != o.color and (c, o.shape) not in taken],
        "shape": [(o, s) for o in objs for s in SHAPES if s != o.shape and (o.color, s) not in taken],
        "size": [(o, s) for o in objs for s in SIZES if s != o.size],
        "add": [c for c in empty] if len(objs) < max_objects else [],
        "remove": list(objs) if len(objs) >= 2 else [],
        "move": [(o, c) for o in objs for c in empty],
        "setting": [s for s in SETTINGS if s != scene.setting],
    }
    kind = rng.choice([k for k in EDIT_KINDS if options[k]])
    pick = rng.choice(options[kind])
    if kind in ("color", "shape", "size"):
        return Edit(kind, cell=pick[0].cell, value=pick[1])
    if kind == "add":
        free = [(c, s) for c in COLORS for s in SHAPES if (c, s) not in taken]
        color, shape = rng.choice(free)
        return Edit("add", obj=Obj(shape, color, rng.choice(SIZES), *pick))
    if kind == "remove":
        return Edit("remove", cell=pick.cell)
    if kind == "move":
        return Edit("move", cell=pick[0].cell, to=pick[1])
    return Edit("setting", value=pick)
