"""Measure the filters on ShapesWorld with known truth: precision and recall at rejecting bad rows.

Real rows carry annotator texts (correct by construction); a known share gets a bad forward text:
a wrong attribute value, the right change on the wrong object, the reverse text as forward
(swapped direction), or another pair's text (random). Run: ``python -m filters.evaluate_filters``.
"""
from __future__ import annotations

import argparse
import io
import json
import random
import time
from dataclasses import replace

from filters.config import FiltersConfig
from filters.specs import filter_stage_specs
from pipeline.seeding import derive_seed
from pipeline.stage import REJECT_COLUMN

BAD_KINDS = ("wrong_attribute", "wrong_object", "swapped_direction", "random_text")


def _png(scene, size: int) -> bytes:
    from pipeline.shapesworld import render

    buf = io.BytesIO()
    render(scene, size).save(buf, "PNG")
    return buf.getvalue()


def make_rows(n: int, seed: int = 0, image_size: int = 32) -> list[dict]:
    """n ShapesWorld triplets (1 or 2 edits apart) with annotator forward and reverse texts."""
    from pipeline.shapesworld import ShapesWorld, annotate, scene_id

    world = ShapesWorld(image_size=image_size, seed=seed)
    rows = []
    for i in range(n):
        rng = random.Random(derive_seed(seed, "eval-pair", i))
        ref, tgt = world.sample_pair(rng, n_edits=1 + (rng.random() < 0.3))
        rows.append({
            "triplet_id": f"eval-{i}", "reference_id": f"sw-{scene_id(ref)}", "target_id": f"sw-{scene_id(tgt)}",
            "reference_scene": ref.to_json(), "target_scene": tgt.to_json(),
            "reference_image": {"bytes": _png(ref, image_size), "path": None},
            "target_image": {"bytes": _png(tgt, image_size), "path": None},
            "modification_text": annotate(ref, tgt, rng), "reverse_text": annotate(tgt, ref, rng), "scores": {},
        })
    return rows


def _wrong_edit(kind: str, ref, edits, rng: random.Random):
    """The true edits with one changed: another value (wrong_attribute) or another object (wrong_object)."""
    from pipeline.shapesworld import COLORS, SETTINGS, SHAPES, SIZES

    k = rng.randrange(len(edits))
    e = edits[k]
    if kind == "wrong_attribute":
        values = {"color": COLORS, "shape": SHAPES, "size": SIZES, "setting": SETTINGS}
        if e.kind in values:
            new = replace(e, value=rng.choice([v for v in values[e.kind] if v != e.value]))
        elif e.kind == "move":
            new = replace(e, to=rng.choice([c for c in ref.empty_cells() if c != e.to] or [e.to]))
        elif e.kind == "add":
            new = replace(e, obj=replace(e.obj, color=rng.choice([c for c in COLORS if c != e.obj.color])))
        else:
            return None
    else:
        if e.cell is None:
            return None
        others = [o.cell for o in ref.objects if o.cell != e.cell]
        if not others:
            return None
        new = replace(e, cell=rng.choice(others))
    return edits[:k] + [new] + edits[k + 1:]


def corrupt(row: dict, kind: str, rng: random.Random, texts: list[str]) -> str | None:
    """A bad forward text of the given kind for the row, or None when that kind cannot be made."""
    from pipeline.shapesworld import Scene, apply_text, describe_edits, diff

    ref, tgt = Scene.from_json(row["reference_scene"]), Scene.from_json(row["target_scene"])
    if kind == "swapped_direction":
        text = row["reverse_text"]
    elif kind == "random_text":
        text = rng.choice(texts)
    else:
        edits = _wrong_edit(kind, ref, diff(ref, tgt), rng)
        if edits is None:
            return None
        try:
            text = describe_edits(ref, edits, rng)
        except (ValueError, AttributeError, IndexError):
            return None  # the altered edit does not apply to this scene (e.g. a taken cell)
    # Known truth: a text that still turns the reference into the target is not bad.
    return None if text is None or apply_text(text, ref) == tgt else text


def inject(rows: list[dict], bad_rate: float, seed: int) -> list[str | None]:
    """Corrupt about bad_rate of the rows in place; returns each row's bad kind (None = good)."""
    texts = [r["modification_text"] for r in rows]
    kinds = []
    for i, row in enumerate(rows):
        rng = random.Random(derive_seed(seed, "inject", i))
        kind = None
        if rng.random() < bad_rate:
            for k in rng.sample(BAD_KINDS, len(BAD_KINDS)):
                text = corrupt(row, k, rng, texts)
                if text is not None:
                    row["modification_text"], kind = text, k
                    break
        kinds.append(kind)
    return kinds


def run_filters(rows: list[dict], cfg: FiltersConfig | None = None, batch_size: int = 256) -> list[dict]:
    """The filter chain over rows in-process, in batches; returns the rows with scores and reasons."""
    stages = [s.build() for s in filter_stage_specs(cfg)]
    out = []
    for i in range(0, len(rows), batch_size):
        chunk = rows[i:i + batch_size]
        batch = {k: [r[k] for r in chunk] for k in chunk[0]}
        for st in stages:
            batch = st(batch)
        out.extend({k: v[j] for k, v in batch.items()} for j in range(len(chunk)))
    return out


def evaluate(n: int = 2000, bad_rate: float = 0.3, seed: int = 0, cfg: FiltersConfig | None = None) -> dict:
    t0 = time.perf_counter()
    rows = make_rows(n, seed)
    kinds = inject(rows, bad_rate, seed)
    t1 = time.perf_counter()
    out = run_filters(rows, cfg)
    t2 = time.perf_counter()
    rejected = [bool(r[REJECT_COLUMN]) for r in out]
    tp = sum(1 for k, rj in zip(kinds, rejected) if k and rj)
    fp = sum(1 for k, rj in zip(kinds, rejected) if not k and rj)
    fn = sum(1 for k, rj in zip(kinds, rejected) if k and not rj)
    per_kind = {k: {"injected": kinds.count(k),
                    "caught": sum(1 for kk, rj in zip(kinds, rejected) if kk == k and rj)} for k in BAD_KINDS}
    reasons: dict[str, int] = {}
    for r in out:
        for why in r[REJECT_COLUMN]:
            reasons[why] = reasons.get(why, 0) + 1
    return {
        "rows": n, "bad": sum(1 for k in kinds if k), "seed": seed,
        "precision": round(tp / (tp + fp), 4) if tp + fp else 1.0,
        "recall": round(tp / (tp + fn), 4) if tp + fn else 1.0,
        "true_positives": tp, "false_positives": fp, "false_negatives": fn,
        "per_kind": per_kind, "reject_reasons": dict(sorted(reasons.items())),
        "make_s": round(t1 - t0, 2), "filter_s": round(t2 - t1, 2),
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--bad-rate", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    res = evaluate(a.rows, a.bad_rate, a.seed)
    print(json.dumps(res, indent=1))
    ok = res["precision"] >= 0.95 and res["recall"] >= 0.90
    print(f"precision {res['precision']:.4f} (goal >= 0.95), recall {res['recall']:.4f} (goal >= 0.90): "
          f"{'PASS' if ok else 'FAIL'}")
    return res


if __name__ == "__main__":
    main()
