"""Does the CIRR import lose anything? One ShapesWorld seed set trained natively and through the CIRR layout.

The seed set ``generator.mtst.data`` builds is written as a CIRR folder (official layout, PNG images,
the annotator's reverse texts in the MTST authors' ``cirr_train_modifier_rev_long.json``), then the
same model config trains once on each (``data.kind: shapesworld`` / ``cirr`` with ``read_reverse``),
and both models are scored on the same held-out pairs (``generators.mtst.evaluate``). Image names
keep the native order (the CIRR reader sorts triplets by name), so both runs see the same batches.
Attribute renaming is off on both: it re-renders scenes, which a CIRR folder does not have.

    python benchmarks/mtst_import_parity.py --out /tmp/parity/native --only native [--n-triplets 4000 --epochs 8 ...] &
    python benchmarks/mtst_import_parity.py --out /tmp/parity/cirr --only cirr [the same options]
    python benchmarks/mtst_import_parity.py --out /tmp/parity --compare
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from PIL import Image

from generators.mtst.config import MTSTConfig
from pipeline.shapesworld.sets.mtst import shapesworld_seed_set
from generators.mtst.evaluate import evaluate_mtst
from pipeline.cir_reverse import REVERSE_KEY, write_jsonl


def write_as_cirr(seeds, root: Path) -> Path:
    """The seed set as ``root/cirr/{captions,image_splits}`` + ``root/train/0/<name>.png``."""
    names = [f"sw-{i:06d}" for i in range(len(seeds.images))]
    (root / "train" / "0").mkdir(parents=True, exist_ok=True)
    for name, img in zip(names, seeds.images):
        Image.fromarray(img).save(root / "train" / "0" / f"{name}.png")
    caps = [{"pairid": k, "reference": names[r], "target_hard": names[t], "target_soft": {names[t]: 1.0},
             "caption": fwd, "img_set": {"id": k, "members": [names[r], names[t]]}}
            for k, (r, t, fwd, _) in enumerate(seeds.pairs)]
    for sub, file, obj in (("captions", "cap.rc2.train.json", caps),
                           ("image_splits", "split.rc2.train.json", {n: f"./train/0/{n}.png" for n in names})):
        (root / "cirr" / sub).mkdir(parents=True, exist_ok=True)
        (root / "cirr" / sub / file).write_text(json.dumps(obj))
    write_jsonl(root / "cirr" / "captions" / "cirr_train_modifier_rev_long.json",
                [{**c, REVERSE_KEY: rev} for c, (_, _, _, rev) in zip(caps, seeds.pairs)])
    return root


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--n-triplets", type=int, default=500)
    ap.add_argument("--epochs", type=float, default=4.0)
    ap.add_argument("--caption-steps", type=int, default=100)
    ap.add_argument("--eval-pairs", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", choices=("native", "cirr"), help="run one path (two processes can run side by side)")
    ap.add_argument("--compare", action="store_true", help="compare the two paths' results under --out (after "
                    "both ran): accuracies and the loss curves step by step, into parity.json")
    a = ap.parse_args(argv)
    if a.compare:
        out = compare(a.out / "native" / "parity-native.json", a.out / "cirr" / "parity-cirr.json")
        (a.out / "parity.json").write_text(json.dumps(out, indent=1))
        print(json.dumps(out, indent=1))
        return
    base = {"data": {"n_triplets": a.n_triplets},
            "train": {"epochs": a.epochs, "caption_steps": a.caption_steps, "permute_attributes": 0.0,
                      "num_threads": a.threads, "progress": False, "cache_dir": str(a.out / "cache")},
            "eval": {"n_pairs": a.eval_pairs}}
    native = MTSTConfig.model_validate(base)
    seeds = shapesworld_seed_set(a.n_triplets, seed=native.data.seed, image_size=native.data.image_size,
                                 max_edits=native.data.max_edits)
    root = write_as_cirr(seeds, a.out / "cirr_dataset")
    via_cirr = MTSTConfig.model_validate({**base, "data": {**base["data"], "kind": "cirr", "path": str(root),
                                                           "read_reverse": True}})
    result = {}
    for name, cfg in (("native", native), ("cirr", via_cirr)):
        if a.only not in (None, name):
            continue
        r = evaluate_mtst(cfg)
        result[name] = {k: r[k] for k in ("forward_accuracy", "reverse_accuracy", "train_seconds", "n_pairs",
                                          "model_dir")}
        print(name, json.dumps(result[name]), flush=True)
    (a.out / f"parity-{a.only or 'both'}.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(a).items()}, **result},
                                                  indent=1))


def compare(native_json: Path, cirr_json: Path) -> dict:
    """The two paths side by side: accuracies and how far apart their loss curves are, step by step
    (the same pixels in the same batches give the same curve; a difference says where the paths part)."""
    runs = {}
    for name, path in (("native", native_json), ("cirr", cirr_json)):
        res = json.loads(path.read_text())[name]
        loss = json.loads((Path(res["model_dir"]).parent / "loss.json").read_text())["loss"]
        runs[name] = {**res, "loss": loss}
    a, b = runs["native"]["loss"], runs["cirr"]["loss"]
    diffs = [abs(x - y) for x, y in zip(a, b)]
    first = next((i for i, d in enumerate(diffs) if d > 0), None)
    return {"native": {k: v for k, v in runs["native"].items() if k != "loss"},
            "cirr": {k: v for k, v in runs["cirr"].items() if k != "loss"},
            "steps": [len(a), len(b)], "max_abs_loss_difference": max(diffs, default=0.0),
            "first_step_that_differs": first,
            "forward_difference": runs["cirr"]["forward_accuracy"] - runs["native"]["forward_accuracy"],
            "reverse_difference": runs["cirr"]["reverse_accuracy"] - runs["native"]["reverse_accuracy"]}


if __name__ == "__main__":
    main()
