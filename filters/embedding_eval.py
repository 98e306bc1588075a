"""The embedding path measured on ShapesWorld: filters and negative checks with scene graphs hidden.

A labelled set: ShapesWorld triplets (the rows of filters.evaluate_filters, rendered at the tiny
CLIP's size) with injected bad texts, and, on rows whose text is good, a text-aligned and an
image-aligned negative of which a known share is invalid. The truth comes from the scene graphs;
the filters and checks see only images and texts (as with photos). Run:
``python -m filters.embedding_eval [--thresholds FILE]``.
"""
from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np

from filters.calibrate import LABELS, embed_rows, features, precision_recall, rejects
from pipeline.seeding import derive_seed
from pipeline.stage import REJECT_COLUMN

# Invalid negatives, by how they are made (the exact checks of generators/negatives/shapesworld.py
# confirm each one is invalid, and each valid one valid).
TEXT_ALIGNED_BAD = ("text_not_applied", "is_target", "is_reference")
IMAGE_ALIGNED_BAD = ("edit_applied", "is_target", "unrelated")


def _negatives(ref, tgt, text: str, rng: random.Random, bad_rate: float, other):
    """(scene, kind) of a text-aligned and an image-aligned negative; kind None = valid; None = none made."""
    from generators.negatives import shapesworld as sw

    requested = sw.requested_change(ref, tgt)
    out = []
    for part, kinds in (("text_aligned", TEXT_ALIGNED_BAD), ("image_aligned", IMAGE_ALIGNED_BAD)):
        kind = rng.choice(kinds) if rng.random() < bad_rate else None
        if part == "text_aligned":
            plan = sw.plan_changed_reference(text, ref, tgt, rng)
            neg = None if plan is None else {None: plan.scene, "text_not_applied": plan.source,
                                             "is_target": tgt, "is_reference": ref}[kind]
            why = None if neg is None else sw.check_text_aligned(text, plan.source, neg, ref, tgt)
        else:
            plan = sw.plan_image_aligned(ref, tgt, None, [], requested, rng, prefer_mined=False)
            neg = None if plan is None else {None: plan.scene, "is_target": tgt, "unrelated": other,
                                             "edit_applied": _side_edit(tgt, ref, rng)}[kind]
            why = None if neg is None else sw.check_image_aligned(neg, ref, tgt, requested)
        # Known truth: keep a negative only when the exact check agrees with how it was made.
        out.append((neg, kind) if neg is not None and (why is None) == (kind is None) else (None, None))
    return out


def _side_edit(tgt, ref, rng: random.Random):
    """The target with one more random edit that does not lead back to the reference."""
    from pipeline.shapesworld import apply_edit, random_edit

    for _ in range(10):
        s = apply_edit(tgt, random_edit(tgt, rng))
        if s != ref:
            return s
    return None


def make_labelled(n: int, seed: int = 0, bad_rate: float = 0.3, neg_bad_rate: float = 0.3,
                  image_size: int = 64) -> list[dict]:
    """n labelled rows with images, texts, negatives, labels (True = bad) and the kind of each bad part."""
    from pipeline.shapesworld import render
    from pipeline.shapesworld.sets.filters import inject, make_rows
    from pipeline.sources.base import png_bytes
    from pipeline.shapesworld import Scene

    rows = make_rows(n, seed, image_size)
    good_texts = [r["modification_text"] for r in rows]
    kinds = inject(rows, bad_rate, seed)
    for i, (row, kind) in enumerate(zip(rows, kinds)):
        row.update(label=kind is not None, bad_kind=kind)
        for part in ("text_aligned", "image_aligned"):
            row.update({f"neg_{part}_image": None, f"neg_{part}_label": None, f"neg_{part}_kind": None})
        if kind is not None:
            continue  # negatives are judged against a right text only
        rng = random.Random(derive_seed(seed, "eval-negatives", i))
        ref, tgt = Scene.from_json(row["reference_scene"]), Scene.from_json(row["target_scene"])
        other = Scene.from_json(rows[(i + n // 2) % n]["reference_scene"])
        for part, (neg, nk) in zip(("text_aligned", "image_aligned"),
                                   _negatives(ref, tgt, good_texts[i], rng, neg_bad_rate, other)):
            if neg is not None:
                row.update({f"neg_{part}_image": {"bytes": png_bytes(render(neg, image_size)), "path": None},
                            f"neg_{part}_scene": neg.to_json(),  # the truth, for tests; never judged
                            f"neg_{part}_label": nk is not None, f"neg_{part}_kind": nk or "valid"})
    return rows


def write_sample(rows: list[dict], path: Path) -> Path:
    """A labelled sample in the calibration command's Parquet form (labels as good/bad, no scenes)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    keep = ("triplet_id", "reference_image", "target_image", "modification_text", "reverse_text",
            "neg_text_aligned_image", "neg_image_aligned_image")
    out = [{**{k: r.get(k) for k in keep},
            **{c: None if r.get(c) is None else ("bad" if r[c] else "good") for c in LABELS}} for r in rows]
    pq.write_table(pa.Table.from_pylist(out), path)
    return path


def _parts(rows: list[dict], rejected: dict[str, np.ndarray]) -> dict:
    """Precision, recall and catches per kind for each labelled part."""
    kind_col = {"label": "bad_kind", "neg_text_aligned_label": "neg_text_aligned_kind",
                "neg_image_aligned_label": "neg_image_aligned_kind"}
    out = {}
    for part, rej in rejected.items():
        idx = [i for i, r in enumerate(rows) if r.get(part) is not None]
        bad = np.array([rows[i][part] for i in idx], bool)
        p, r = precision_recall(rej[idx], bad)
        per_kind: dict[str, list[int]] = {}
        for i in idx:
            k = rows[i].get(kind_col[part]) or "valid"
            c = per_kind.setdefault(k, [0, 0])
            c[0] += 1
            c[1] += int(rej[i])
        out[part] = {"rows": len(idx), "bad": int(bad.sum()), "precision": round(p, 4), "recall": round(r, 4),
                     "rejected_per_kind": {k: f"{c[1]}/{c[0]}" for k, c in sorted(per_kind.items())}}
    return out


def judge(rows: list[dict], fcfg, ncfg) -> dict:
    """Run the filter chain (scene graphs hidden) and the negatives stage's photo checks over
    embedded rows with these configs; figures per part and per kind."""
    from filters.calibrate import RULES, config_thresholds
    from filters.evaluate_filters import run_filters

    hidden = [{**r, "reference_scene": None, "target_scene": None, "scores": {}} for r in rows]
    chain_cols = ("triplet_id", "reference_id", "target_id", "modification_text", "reverse_text", "scores",
                  "reference_scene", "target_scene", "emb_reference", "emb_target", "emb_text",
                  "emb_text_direction", "emb_reverse_direction")
    out = run_filters([{k: r[k] for k in chain_cols} for r in hidden], fcfg)
    f = features(rows)
    rej = {"label": np.array([bool(r[REJECT_COLUMN]) for r in out])}
    for part in ("neg_text_aligned_label", "neg_image_aligned_label"):
        rej[part] = rejects(f, RULES[part], config_thresholds(ncfg, part))
    reasons: dict[str, int] = {}
    for r in out:
        for why in r[REJECT_COLUMN]:
            reasons[why] = reasons.get(why, 0) + 1
    return {**_parts(rows, rej), "reject_reasons": dict(sorted(reasons.items()))}


def evaluate_embedding(n: int = 2000, seed: int = 0, bad_rate: float = 0.3, thresholds: Path | None = None,
                       config: Path | None = None, cache_dir: Path | None = None,
                       sample: Path | None = None) -> dict:
    """Figures with the config's thresholds (``before``) and, given a snippet, with it (``after``)."""
    from filters.calibrate import load_sections
    from pipeline.config_base import deep_merge, read_yaml, validate_section
    from pipeline.embedder import ClipEmbedder

    emb_cfg, fcfg, ncfg, cfg_cache = load_sections(config)
    t0 = time.perf_counter()
    rows = make_labelled(n, seed, bad_rate, bad_rate, image_size=emb_cfg.tiny.render_size)
    if sample is not None:
        write_sample(rows, sample)
    t1 = time.perf_counter()
    embedder = ClipEmbedder.from_config(emb_cfg, cache_dir or cfg_cache)
    rows = embed_rows(rows, embedder, fcfg.clip_direction.null_text)
    t2 = time.perf_counter()
    res = {"rows": n, "seed": seed, "embedder": embedder.id, "before": judge(rows, fcfg, ncfg)}
    if thresholds is not None:
        snip = read_yaml(thresholds, "thresholds")
        f2 = validate_section(type(fcfg), deep_merge(fcfg.model_dump(mode="json"), snip.get("filters") or {}),
                              f"{thresholds} (filters)")
        n2 = validate_section(type(ncfg), deep_merge(ncfg.model_dump(mode="json"), snip.get("negatives") or {}),
                              f"{thresholds} (negatives)")
        res["after"] = judge(rows, f2, n2)
    res.update(make_s=round(t1 - t0, 1), embed_s=round(t2 - t1, 1), judge_s=round(time.perf_counter() - t2, 1))
    return res


def print_summary(res: dict, min_precision: float = 0.9, min_recall: float = 0.8) -> None:
    """One line per part and config: precision and recall against the embedding-path goal."""
    for when in ("before", "after"):
        for part, r in (res.get(when) or {}).items():
            if part in LABELS:
                ok = r["precision"] >= min_precision and r["recall"] >= min_recall
                print(f"{when:>6} {part:<24} precision {r['precision']:.3f} recall {r['recall']:.3f} "
                      f"(goal >= {min_precision}, >= {min_recall}): {'PASS' if ok else 'FAIL'}")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--bad-rate", type=float, default=0.3, help="share of rows given a bad text (negatives: the same "
                                                                 "share of the good rows' negatives made invalid)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--config", type=Path, help="run config YAML: its embedder, cache_dir and thresholds")
    ap.add_argument("--cache-dir", type=Path, help="where the tiny CLIP is cached (default: the config's)")
    ap.add_argument("--thresholds", type=Path, help="also judge with this snippet (python -m filters.calibrate)")
    ap.add_argument("--write-sample", type=Path, help="write the rows as a labelled Parquet sample to calibrate on")
    a = ap.parse_args(argv)
    res = evaluate_embedding(a.rows, a.seed, a.bad_rate, a.thresholds, a.config, a.cache_dir, a.write_sample)
    print(json.dumps(res, indent=1))
    print_summary(res)
    return res


if __name__ == "__main__":
    main()
