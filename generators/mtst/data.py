"""The MTST seed sets' augmentation: the renaming of colors, shapes and settings that shows a
seed pair anew at each training step. The ShapesWorld seed sets themselves (``SeedSet``, pairs,
family pairs, captions) are built in pipeline/shapesworld/sets/mtst.py."""
from __future__ import annotations

import re

import numpy as np


def renamed_vocabulary() -> tuple[str, ...]:
    """Every word ``renamed_text`` can write: the colors, shapes and settings, and the articles it mends."""
    from pipeline.shapesworld.scene import COLORS, SETTINGS, SHAPES

    return (*COLORS, *SHAPES, *SETTINGS, "a", "an")


def attribute_permutation(rng: np.random.Generator) -> dict[str, str]:
    """One random renaming of the ShapesWorld colors, shapes and settings (each among its own kind)."""
    from pipeline.shapesworld.scene import COLORS, SETTINGS, SHAPES

    words = {}
    for vocab in (COLORS, SHAPES, SETTINGS):
        words.update(zip(vocab, (vocab[i] for i in rng.permutation(len(vocab)))))
    return words


def renamed_scene(scene_json: str, words: dict[str, str]):
    """The scene with its setting and every object's color and shape renamed by ``words``."""
    from pipeline.shapesworld import Scene

    d = Scene.from_json(scene_json).to_dict()
    d["setting"] = words[d["setting"]]
    for o in d["objects"]:
        o["color"], o["shape"] = words[o["color"]], words[o["shape"]]
    return Scene.from_dict(d)


def renamed_text(text: str, words: dict[str, str]) -> str:
    """The text with every color, shape and setting word renamed by ``words``, keeping a capital
    and mending the article before it ("an autumn scene" -> "a night scene")."""
    def swap(m: re.Match) -> str:
        article, word = m.group(1), m.group(2)
        new = words[word.lower()]
        new = new.capitalize() if word[0].isupper() else new
        if article:
            a = "an" if new[0].lower() in "aeiou" else "a"
            new = f"{a.capitalize() if article[0].isupper() else a} {new}"
        return new

    return re.sub(r"\b(?:(an?)\s+)?(" + "|".join(words) + r")\b", swap, text, flags=re.IGNORECASE)


def permuted_pair(scenes: tuple[str, str], texts: tuple[str | None, ...], rng: np.random.Generator,
                  image_size: int = 64) -> tuple[np.ndarray, np.ndarray, tuple[str | None, ...]]:
    """A ShapesWorld seed pair seen anew: colors, shapes and settings renamed by one random
    permutation each, in both scenes (re-rendered) and in every text (the words swapped).

    The edits stay the same edits (a color change stays one, between the renamed colors) and the
    scenes stay valid ((color, shape) unique, one object a cell), so the annotator's texts stay true
    of the new images: augmentation of the annotated pair, not a new annotation. Sizes are left as
    they are ("enlarge", "smaller" name them without the word). Returns (ref image, target image, texts).
    """
    from pipeline.shapesworld import render

    words = attribute_permutation(rng)
    ref, tgt = (np.asarray(render(renamed_scene(js, words), image_size).convert("RGB"), dtype=np.uint8)
                for js in scenes)
    return ref, tgt, tuple(t if t is None else renamed_text(t, words) for t in texts)
