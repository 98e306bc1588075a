"""ShapesWorld speed: render images/s (cached vs. a redraw-everything baseline) and
annotate+parse round trips/s, on one core.

    .venv/bin/python benchmarks/bench_shapesworld.py

Each figure is the best of 3 runs, to be less sensitive to other work on a shared machine.
"""
from __future__ import annotations

import argparse
import platform
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.shapesworld import ShapesWorld, annotate, apply_text, render  # noqa: E402


def best_rate(fn, items, repeats: int = 3) -> float:
    """Items per second of fn over items, best of `repeats` runs."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for it in items:
            fn(it)
        best = min(best, time.perf_counter() - t0)
    return len(items) / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=3000, help="scenes rendered per cached run")
    ap.add_argument("--pairs", type=int, default=1000, help="pairs per annotate+parse run")
    args = ap.parse_args()

    world = ShapesWorld(seed=0)  # 1 to 4 objects per scene, as in the default config
    rng = random.Random(0)
    scenes = [world.sample_scene(rng) for _ in range(args.images)]
    baseline_scenes = scenes[: max(100, args.images // 10)]
    print(f"python {platform.python_version()}, {platform.machine()}, one process")
    print(f"{'figure':<38}{'per second':>12}{'vs baseline':>13}")
    for size in (64, 256):
        for s in scenes[:50]:
            render(s, size)  # fill the caches: every setting and sprite drawn once
        n = args.images if size == 64 else args.images // 4
        cached = best_rate(lambda s: render(s, size), scenes[:n])
        naive = best_rate(lambda s: render(s, size, cache=False), baseline_scenes[: max(50, n // 10)])
        print(f"{f'render {size}px, cached':<38}{cached:>12,.0f}{cached / naive:>12.1f}x")
        print(f"{f'render {size}px, no cache (baseline)':<38}{naive:>12,.0f}{1.0:>12.1f}x")

    pairs = [world.sample_pair(rng, 1 + i % 2) for i in range(args.pairs)]
    seeds = list(range(len(pairs)))

    def round_trip(i):
        ref, tgt = pairs[i]
        assert apply_text(annotate(ref, tgt, random.Random(i)), ref) == tgt

    print(f"{'annotate+parse round trips':<38}{best_rate(round_trip, seeds):>12,.0f}")
    texts = [annotate(ref, tgt, random.Random(i)) for i, (ref, tgt) in enumerate(pairs)]
    parse_rate = best_rate(lambda i: apply_text(texts[i], pairs[i][0]), seeds)
    print(f"{'parse only (apply_text)':<38}{parse_rate:>12,.0f}")

if __name__ == "__main__":
    main()
