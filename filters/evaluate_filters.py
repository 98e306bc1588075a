"""Measure the filters on ShapesWorld with known truth: precision and recall at rejecting bad rows.

Real rows carry annotator texts (correct by construction); a known share gets a bad forward text:
a wrong attribute value, the right change on the wrong object, the reverse text as forward
(swapped direction), or another pair's text (random). Run: ``python -m filters.evaluate_filters``.
"""
from __future__ import annotations

import argparse
import json
import time

from filters.config import FiltersConfig
from filters.specs import filter_stage_specs
from pipeline.shapesworld.sets.filters import BAD_KINDS, inject, make_rows
from pipeline.stage import REJECT_COLUMN


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
