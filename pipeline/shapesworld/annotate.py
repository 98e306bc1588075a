"""The annotator: writes a modification text for a pair of scenes, as a human annotator would.

It plays the human annotators of the seed set: varied phrasings (language.TEMPLATES), varied
references to objects ("the red circle", "the star", "the object on the left", "it"), varied
joins for two edits. Every text it writes reads back exactly with parse.py.
"""
from __future__ import annotations

import random

from .edits import Edit, apply_edit, diff_all
from .language import COMPILED, DESTINATIONS, JOINS, LOCATIONS, OBJECT_NOUN, PRONOUN, ref_matches
from .scene import Obj, Scene, position_name


def annotate(ref: Scene, tgt: Scene, rng: random.Random) -> str | None:
    """A modification text turning ref into tgt, or None unless they differ by 1 or 2 edits."""
    options = diff_all(ref, tgt, max_edits=2)
    if not options or not options[0]:
        return None
    return describe_edits(ref, rng.choice(options), rng)


def describe_edits(scene: Scene, edits: list[Edit], rng: random.Random) -> str:
    """A text for edits applied in order to scene (each reference fits exactly one object)."""
    clauses, it_cell = [], None
    for e in edits:
        clauses.append(write_clause(e, scene, it_cell, rng))
        scene = apply_edit(scene, e)
        it_cell = e.result_cell()
    text = clauses[0]
    for nxt in clauses[1:]:
        text = rng.choice(JOINS).format(a=text, b=nxt)
    if rng.random() < 0.5:
        text = text[0].upper() + text[1:]
    if rng.random() < 0.4:
        text += "."
    return text


def write_clause(edit: Edit, scene: Scene, it_cell, rng: random.Random) -> str:
    """One clause for one edit on the scene as it is just before the edit."""
    fitting = [(parts, fixed) for kind, parts, fixed, _ in COMPILED
               if kind == edit.kind and all(edit.value == v for v in fixed.values())]
    parts, _ = rng.choice(fitting)
    words = []
    for k, (kind, name) in enumerate(parts):
        if kind == "word":
            words.append(name)
        elif name == "obj":
            # "put the red circle at the top left on the right" is hard to read: no location
            # inside a reference that a location phrase follows.
            loc_next = k + 1 < len(parts) and parts[k + 1] == ("slot", "loc")
            words.append(reference(scene.at(edit.cell), scene, it_cell, rng, allow_location=not loc_next))
        elif name == "loc":
            words.append(rng.choice(LOCATIONS[position_name(*_destination(edit))]))
        elif name == "pos":
            words.append(rng.choice(DESTINATIONS[position_name(*_destination(edit))]))
        elif edit.kind == "add":
            words.append(getattr(edit.obj, name))
        else:
            words.append(edit.value)
    words = ["an" if w == "a" and i + 1 < len(words) and words[i + 1][0] in "aeiou" else w
             for i, w in enumerate(words)]
    return " ".join(words)


def _destination(edit: Edit) -> tuple[int, int]:
    return edit.obj.cell if edit.kind == "add" else edit.to


def reference(obj: Obj, scene: Scene, it_cell, rng: random.Random, allow_location: bool = True) -> str:
    """A phrase naming obj that fits no other object in the scene."""
    if it_cell == obj.cell and rng.random() < 0.5:
        return PRONOUN
    forms = [
        ({"color": obj.color, "shape": obj.shape}, f"the {obj.color} {obj.shape}"),
        ({"size": obj.size, "color": obj.color, "shape": obj.shape}, f"the {obj.size} {obj.color} {obj.shape}"),
        ({"shape": obj.shape}, f"the {obj.shape}"),
        ({"color": obj.color}, f"the {obj.color} {OBJECT_NOUN}"),
        ({"size": obj.size, "shape": obj.shape}, f"the {obj.size} {obj.shape}"),
    ]
    if allow_location:
        loc = rng.choice(LOCATIONS[obj.position])
        forms += [
            ({"color": obj.color, "shape": obj.shape, "cell": obj.cell}, f"the {obj.color} {obj.shape} {loc}"),
            ({"cell": obj.cell}, f"the {OBJECT_NOUN} {loc}"),
        ]
    unique = [text for desc, text in forms if len(ref_matches(desc, scene)) == 1]
    return rng.choice(unique)

