"""Read a modification text as edits on a scene, strictly: it checks generated text exactly.

A text is one or more clauses joined by connectors ("and", ", then", "; also", ...). Clauses
apply in order, and each reference is resolved against the scene as the earlier clauses left
it. An unknown word, a clause no template reads, a reference that fits no object or several,
an edit that does not apply, or two different readings of the same text: all are errors,
never a guess.
"""
from __future__ import annotations

import re
from functools import lru_cache

from .edits import Edit, apply_edit
from .language import (COMPILED, CONNECTORS, CORNERS, OBJECT_NOUN, POSITION_WORDS, PREPOSITIONS, PRONOUN,
                       VOCAB, ref_matches, ref_text)
from .scene import Obj, Scene, position_cell


class ParseError(ValueError):
    """A text that does not read as valid edits on the given scene; the message says why."""


_CONNECTOR_WORDS = frozenset(w for c in CONNECTORS for w in c)
_WORD = re.compile(r"[a-z]+|[,;.]")
_BAD = re.compile(r"[^a-z,;.\s]")

KNOWN_WORDS = frozenset(
    {w for _, parts, _, _ in COMPILED for kind, w in parts if kind == "word"}
    | {w for c in CONNECTORS for w in c}
    | {w for words in VOCAB.values() for v in words for w in v.split()}
    | {w for alts in POSITION_WORDS.values() for a in alts for w in a}
    | {"the", "corner", OBJECT_NOUN, PRONOUN, *PREPOSITIONS}
)


def tokenize(text: str) -> tuple[str, ...]:
    """Lowercase words and , ; . as tokens; a hyphen reads as a space ("top-left")."""
    t = text.lower().replace("-", " ")
    bad = _BAD.search(t)
    if bad:
        raise ParseError(f"unexpected character {bad.group()!r}")
    toks = _WORD.findall(t)
    # "an autumn background" is "a autumn background" in the templates; article agreement
    # carries no meaning, so "an" reads as "a" only where English wants "an".
    return tuple("a" if w == "an" and i + 1 < len(toks) and toks[i + 1][0] in "aeiou" else w
                 for i, w in enumerate(toks))


# --- clause syntax (scene-free) ---------------------------------------------------------------

def _positions(toks, i):
    """Yield (end, cell) for "the <position> [corner]" starting at i."""
    if i >= len(toks) or toks[i] != "the":
        return
    for name, alts in POSITION_WORDS.items():
        for words in alts:
            j = i + 1 + len(words)
            if toks[i + 1:j] == words:
                yield j, position_cell(name)
                if name in CORNERS and j < len(toks) and toks[j] == "corner":
                    yield j + 1, position_cell(name)


def _location(toks, i):
    if i < len(toks) and toks[i] in PREPOSITIONS:
        yield from _positions(toks, i + 1)


def _reference(toks, i):
    """Yield (end, desc) for "it" or "the [size] [color] (shape|object) [location]"."""
    if i < len(toks) and toks[i] == PRONOUN:
        yield i + 1, {"pronoun": True}
        return
    if i >= len(toks) or toks[i] != "the":
        return
    desc, j = {}, i + 1
    for attr in ("size", "color"):
        if j < len(toks) and toks[j] in VOCAB[attr]:
            desc[attr] = toks[j]
            j += 1
    if j >= len(toks):
        return
    if toks[j] in VOCAB["shape"]:
        desc["shape"] = toks[j]
    elif toks[j] != OBJECT_NOUN:
        return
    j += 1
    yield j, dict(desc)
    for end, cell in _location(toks, j):
        yield end, {**desc, "cell": cell}


def _match(parts, k, toks, i, binds):
    """Yield bindings for template parts[k:] matching exactly toks[i:]."""
    if k == len(parts):
        if i == len(toks):
            yield binds
        return
    kind, name = parts[k]
    if kind == "word":
        if i < len(toks) and toks[i] == name:
            yield from _match(parts, k + 1, toks, i + 1, binds)
        return
    if name in VOCAB:
        if i < len(toks) and toks[i] in VOCAB[name]:
            yield from _match(parts, k + 1, toks, i + 1, {**binds, name: toks[i]})
        return
    alternatives = {"obj": _reference, "loc": _location, "pos": _positions}[name](toks, i)
    for end, value in alternatives:
        yield from _match(parts, k + 1, toks, end, {**binds, name: value})


@lru_cache(maxsize=4096)
def read_clause(toks: tuple[str, ...]) -> tuple[tuple[str, dict], ...]:
    """Every (edit kind, bindings) reading of one clause; empty when no template reads it."""
    out = []
    for kind, parts, fixed, _ in COMPILED:
        for binds in _match(parts, 0, toks, 0, {}):
            out.append((kind, {**binds, **fixed}))
    return tuple(out)


# --- meaning (needs the scene) ----------------------------------------------------------------

def _resolve(desc: dict, scene: Scene, it_cell) -> Obj:
    if desc.get("pronoun"):
        if it_cell is None:
            raise ParseError("'it' does not refer to an object edited just before")
        return scene.at(it_cell)
    found = ref_matches(desc, scene)
    if not found:
        raise ParseError(f"there is no {ref_text(desc)[4:]} in the scene")
    if len(found) > 1:
        raise ParseError(f"'{ref_text(desc)}' could be any of {len(found)} objects")
    return found[0]


def _to_edit(kind: str, b: dict, scene: Scene, it_cell) -> Edit:
    if kind == "setting":
        return Edit("setting", value=b["setting"])
    if kind == "add":
        return Edit("add", obj=Obj(b["shape"], b["color"], b["size"], *b["loc" if "loc" in b else "pos"]))
    target = _resolve(b["obj"], scene, it_cell)
    if kind == "remove":
        return Edit("remove", cell=target.cell)
    if kind == "move":
        return Edit("move", cell=target.cell, to=b["loc" if "loc" in b else "pos"])
    return Edit(kind, cell=target.cell, value=b[kind])


def _splits(toks: tuple[str, ...], i: int = 0):
    """Yield lists of clauses: toks[i:] cut at connectors, every way that leaves no empty clause."""
    for j in range(i + 1, len(toks) + 1):
        # No template holds a connector word, so a clause ends at the first one: this keeps
        # the number of cuts small even for a long run of "and , then ;" in generated text.
        if toks[j - 1] in _CONNECTOR_WORDS:
            return
        if j == len(toks):
            yield [toks[i:]]
            return
        for conn in CONNECTORS:
            if toks[j:j + len(conn)] == conn and j + len(conn) < len(toks):
                for rest in _splits(toks, j + len(conn)):
                    yield [toks[i:j]] + rest


def _interpret(clauses, scene: Scene, why: list[str]):
    """Yield the edit list of every reading of the clauses in order; append why others fail."""
    readings = [read_clause(c) for c in clauses]
    if not all(readings):
        bad = next(c for c, r in zip(clauses, readings) if not r)
        shown = " ".join(bad)
        why.append(f"cannot read {shown if len(shown) <= 60 else shown[:57] + '...'!r}")
        return

    def rec(k, s, it_cell, edits):
        if k == len(readings):
            yield edits
            return
        for kind, binds in readings[k]:
            try:
                e = _to_edit(kind, binds, s, it_cell)
                nxt = apply_edit(s, e)
            except ValueError as err:
                why.append(str(err))
                continue
            yield from rec(k + 1, nxt, e.result_cell(), edits + [e])

    yield from rec(0, scene, None, [])


def parse(text: str, scene: Scene) -> list[Edit]:
    """The edits a text describes on a scene; ParseError (a ValueError) saying why it cannot."""
    toks = tokenize(text)
    if toks and toks[-1] == ".":
        toks = toks[:-1]
    if not toks:
        raise ParseError("empty text")
    unknown = sorted({w for w in toks if w not in KNOWN_WORDS})
    if unknown:
        raise ParseError(f"unknown word{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}")
    results, why = [], []
    for clauses in _splits(toks):
        for edits in _interpret(clauses, scene, why):
            if edits not in results:
                results.append(edits)
    if len(results) > 1:
        raise ParseError(f"the text reads {len(results)} different ways")
    if not results:
        # A reason about the scene beats "cannot read" from some other way of cutting the text.
        why.sort(key=lambda w: w.startswith("cannot read"))
        raise ParseError(why[0] if why else "cannot cut the text into clauses joined by 'and', 'then', ...")
    return results[0]


def apply_text(text: str, scene: Scene) -> Scene | None:
    """The scene the text turns `scene` into, or None when it cannot be read or does not apply."""
    try:
        edits = parse(text, scene)
    except ParseError:
        return None
    s = scene
    for e in edits:
        s = apply_edit(s, e)
    return s
