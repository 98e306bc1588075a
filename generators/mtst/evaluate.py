"""Exact accuracy of MTST texts on held-out ShapesWorld pairs: does the text turn one scene into the other?

``python -m generators.mtst.evaluate --config cfg.yaml`` trains (or loads the cached model), writes
forward and reverse texts for ``eval.n_pairs`` pairs drawn with ``eval.seed`` and prints the share
that ShapesWorld's strict parser applies exactly (forward: ref -> target; reverse: target -> ref).
"""
from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from generators.mtst.config import MTSTConfig, load_mtst_config
from generators.mtst.text_stage import MTSTTextStage
from generators.mtst.train import train_mtst
from pipeline.shapesworld.sets.mtst import shapesworld_family_pairs, shapesworld_seed_set


def evaluate_mtst(cfg: MTSTConfig, model_dir: str | Path | None = None) -> dict:
    """Train or load the model, then score its texts on held-out pairs; returns the report dict."""
    from pipeline.shapesworld import Scene, apply_text

    # 1. the model
    train = None
    if model_dir is None:
        train = train_mtst(cfg)
        model_dir = train.model_dir
    # 2. held-out pairs (their own seed), and how many of them the seed set already had
    held = held_out_pairs(cfg)
    seen = _seed_pairs(cfg) if train is not None else set()
    # 3. texts, both directions
    t0 = time.perf_counter()
    with _text_stage(model_dir, cfg.infer) as stage:
        forward, reverse = stage.describe(list(held.images), [p[0] for p in held.pairs], [p[1] for p in held.pairs])
    seconds = time.perf_counter() - t0
    # 4. exact check with the strict parser
    scenes = [Scene.from_json(s) for s in held.scenes]
    ok_f, ok_r, failures = [], [], []
    for (r, t, gold_f, gold_r), f, b in zip(held.pairs, forward, reverse):
        ok_f.append(apply_text(f, scenes[r]) == scenes[t])
        ok_r.append(apply_text(b, scenes[t]) == scenes[r])
        if not (ok_f[-1] and ok_r[-1]) and len(failures) < 20:
            failures.append({"forward": f, "forward_ok": ok_f[-1], "annotator": gold_f,
                             "reverse": b, "reverse_ok": ok_r[-1], "annotator_reverse": gold_r})
    n = len(held.pairs)
    kinds = Counter(_edit_kind(scenes[r], scenes[t]) for r, t, _, _ in held.pairs)
    wrong = Counter(_edit_kind(scenes[r], scenes[t]) for (r, t, _, _), ok in zip(held.pairs, ok_f) if not ok)
    return {
        "n_pairs": n,
        "pairs": cfg.eval.pairs,
        "edits_per_pair": dict(sorted(Counter(len(_edits(scenes[r], scenes[t])) for r, t, _, _ in held.pairs).items())),
        "forward_accuracy": sum(ok_f) / n,
        "reverse_accuracy": sum(ok_r) / n,
        "pairs_also_in_seed_set": sum((held.scenes[r], held.scenes[t]) in seen for r, t, _, _ in held.pairs),
        "forward_errors_by_edit": {k: f"{wrong[k]}/{kinds[k]}" for k in sorted(kinds)},
        "train_seconds": None if train is None else round(train.seconds, 1),
        "train_cached": None if train is None else train.cached,
        "train_steps": None if train is None else train.steps,
        "generate_seconds": round(seconds, 1),
        "model_dir": str(model_dir),
        "backend": cfg.infer.backend,
        "failures": failures,
    }


def caption_accuracy(cfg: MTSTConfig, model_dir: str | Path, n_scenes: int) -> dict:
    """How well a model reads one scene: its text for (scene, scene) against the scene's caption, on
    ``n_scenes`` held-out scenes (from ``eval.seed``). Meaningful for a model fresh from the caption
    stage (e.g. ``train.epochs`` set so the pair stage is a step or two); after the pair stage the
    model writes modification texts, not captions."""
    from pipeline.shapesworld.sets.mtst import shapesworld_captions

    images, gold = shapesworld_captions(n_scenes, seed=cfg.eval.seed, image_size=cfg.data.image_size)
    infer = cfg.infer.model_copy(update={"max_new_tokens": max(cfg.infer.max_new_tokens, 64)})
    with _text_stage(model_dir, infer) as stage:  # one direction: reference and target are the same scene
        texts = stage.texts(list(images), range(n_scenes), range(n_scenes))
    ok = [caption_matches(t, g) for t, g in zip(texts, gold)]
    wrong = [{"generated": t, "caption": g} for t, g, k in zip(texts, gold, ok) if not k]
    return {"n_scenes": n_scenes, "caption_exact": sum(ok) / n_scenes, "failures": wrong[:20]}


def caption_matches(text: str, caption: str) -> bool:
    """The same caption, but for case and a final period."""
    return text.strip().rstrip(".").strip().lower() == caption.strip().lower()


@contextmanager
def _text_stage(model_dir: str | Path, infer) -> Iterator[MTSTTextStage]:
    stage = MTSTTextStage(model_dir, infer)
    try:
        yield stage
    finally:
        stage.teardown()


def held_out_pairs(cfg: MTSTConfig):
    """The evaluation pairs: within ShapesWorld families (as mined) or random, from ``eval.seed``."""
    if cfg.eval.pairs == "families":
        return shapesworld_family_pairs(cfg.eval.n_pairs, seed=cfg.eval.seed, image_size=cfg.data.image_size)
    return shapesworld_seed_set(
        cfg.eval.n_pairs, seed=cfg.eval.seed, image_size=cfg.data.image_size, max_edits=cfg.data.max_edits
    )


def _seed_pairs(cfg: MTSTConfig) -> set[tuple[str, str]]:
    d = cfg.data
    s = shapesworld_seed_set(d.n_triplets, seed=d.seed, image_size=d.image_size, max_edits=d.max_edits)
    return {(s.scenes[r], s.scenes[t]) for r, t, _, _ in s.pairs}


def _edits(ref, tgt) -> list:
    from pipeline.shapesworld import diff

    return diff(ref, tgt) or []


def _edit_kind(ref, tgt) -> str:
    return "+".join(e.kind for e in _edits(ref, tgt)) or "none"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Exact accuracy of MTST forward/reverse texts on held-out ShapesWorld pairs.")
    ap.add_argument("--config", default=None, help="YAML with the MTST section (top level, mtst: or generator.mtst:)")
    ap.add_argument("--model", default=None, help="evaluate this saved model instead of training from the config")
    ap.add_argument("--report", default=None, help="also write the full report (with failures) as JSON here")
    ap.add_argument("--captions", type=int, default=0, metavar="N",
                    help="also score the model's captions of N held-out single scenes (reference = target), "
                         "how well it reads a scene; meaningful right after the caption stage")
    args = ap.parse_args(argv)
    try:
        cfg = load_mtst_config(args.config)
    except (FileNotFoundError, ValueError) as err:
        ap.error(str(err))
    rep = evaluate_mtst(cfg, args.model)
    if args.captions:
        rep["captions"] = caption_accuracy(cfg, rep["model_dir"], args.captions)
    if args.report:
        Path(args.report).write_text(json.dumps(rep, indent=2))
    if rep["train_seconds"] is not None:
        how = "loaded from cache" if rep["train_cached"] else f"trained in {rep['train_seconds']:.0f} s"
        print(f"model {rep['model_dir']}: {how}, {rep['train_steps']} steps")
    print(f"held-out pairs: {rep['n_pairs']} ({rep['pairs']}, edits per pair {rep['edits_per_pair']}; "
          f"eval.seed={cfg.eval.seed}; {rep['pairs_also_in_seed_set']} also in the seed set)")
    print(f"forward accuracy (text turns reference into target): {rep['forward_accuracy']:.1%}")
    print(f"reverse accuracy (text turns target into reference): {rep['reverse_accuracy']:.1%}")
    print(f"forward errors by edit kind: {rep['forward_errors_by_edit']}")
    for f in rep["failures"][:5]:
        print(f"  e.g. generated {f['forward']!r} (annotator: {f['annotator']!r})")
    if "captions" in rep:
        c = rep["captions"]
        print(f"exact captions of {c['n_scenes']} held-out single scenes: {c['caption_exact']:.1%}")


if __name__ == "__main__":
    main()
