"""The driver's peak memory over pool -> mining -> every unit's rows: streamed pool vs in-memory pool.

  python benchmarks/bench_pool_memory.py --n 100000          (about 5 minutes on 2 busy cores)
  smoke test:  python benchmarks/bench_pool_memory.py --n 2000

A folder of ``n`` random RGB PNGs (``--size`` px, incompressible: about 3 KB at 32 px) in
``--labels`` label folders is written to a temp dir, then each path runs in its own child process
(so its ``ru_maxrss`` is its own), with label mining (k pairs per image, no embedder):

- ``streamed``: the job's steps (``load_pool`` writes the pool under the cache one row at a time,
  ``mine_pairs`` reads the small columns, ``write_units`` + ``UnitRows`` make every unit's rows,
  which are dropped as a runtime would hand them on);
- ``memory``: the path before it, rebuilt here: every source row in a dict (id -> row, image bytes
  included), mining over that dict, and every unit's rows built up front in one list.

Printed: peak RSS and its growth above the RSS after imports, per phase, and the ratio of growths.
Each path also runs on the first quarter of the images (hard links), so the growth splits into a
fixed part (allocator arenas, buffers) and a per-image slope; 1M images is extrapolated as
growth(n) + slope x (1M - n). The in-memory path's slope holds every image's bytes: for real
photos (~100 KB each rather than ~3 KB) it grows with their size, the streamed path's does not.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def link_subset(src: Path, dst: Path, n: int) -> None:
    """The first n images of ``src`` (sorted), hard-linked under ``dst`` in the same label folders."""
    for f in sorted(src.rglob("*.png"))[:n]:
        (dst / f.parent.name).mkdir(parents=True, exist_ok=True)
        os.link(f, dst / f.parent.name / f.name)


def make_folder(root: Path, n: int, size: int, labels: int, seed: int = 0) -> int:
    """n random PNGs in ``labels`` folders; returns their total bytes."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    total = 0
    for i in range(n):
        d = root / f"label{i % labels:05d}"
        if i < labels:
            d.mkdir(parents=True)
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, format="PNG", compress_level=1)
        (d / f"img{i:07d}.png").write_bytes(buf.getvalue())
        total += buf.tell()
    return total


def run_config(folder: Path, cache: Path, k: int):
    from pipeline.job.config import RunConfig

    return RunConfig.model_validate({
        "name": "bench", "out_dir": str(cache / "out"), "cache_dir": str(cache), "seed": 0,
        "source": {"kind": "folder", "path": str(folder)},
        "mining": {"strategies": ["label"], "k": k, "near_dup": 1.0},
        "generator": {"kind": "annotator"}})


def warm_arrow(tmp: Path) -> None:
    """Arrow's allocator and Parquet's first write reserve ~50 MB once: a cost of importing, not of the pool."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tmp.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"a": ["x"]}), tmp / "warm.parquet")
    pq.read_table(tmp / "warm.parquet")


# -- the two paths (each in a child process) -----------------------------------------------------
def child(a) -> dict:
    import pipeline.mining  # noqa: F401 - both paths' imports (torch) before the baseline
    import pipeline.pool_store  # noqa: F401
    import pipeline.sources  # noqa: F401
    from pipeline.job import generate as job
    from pipeline.job.units import UnitRows, units_file, write_units

    cfg = run_config(Path(a.folder), Path(a.cache), a.k)
    job.generator_id(cfg)
    warm_arrow(Path(a.cache))
    base = rss_mb()
    phases = {}
    t = time.perf_counter()

    def phase(name: str) -> None:
        nonlocal t
        phases[name] = {"peak_mb": round(peak_mb(), 1), "seconds": round(time.perf_counter() - t, 1)}
        t = time.perf_counter()

    if a.mode == "streamed":
        pool = job.load_pool(cfg)
        phase("pool")
        pairs = job.mine_pairs(cfg, pool)
        units = job.cut_units(cfg, pairs)
        phase("mining")
        todo = list(range(len(units)))
        write_units(units_file(cfg), units, todo, pool)
        make = UnitRows(cfg, units_file(cfg), todo, pool.images_bin, job.generator_id(cfg))
        rows = sum(len(make(u)) for u in todo)  # each unit's rows dropped, as a runtime hands them on
        phase("unit_rows")
        n = len(pool)
    else:
        from pipeline.job.units import Pair, rows_of
        from pipeline.mining import mine
        from pipeline.sources import make_source

        source = make_source(cfg.source, cfg.seed)
        pool = {r["image_id"]: r for r in source}
        phase("pool")
        found = mine(pool, cfg.mining, cfg.embedder, seed=cfg.seed, cache_dir=cfg.cache_dir,
                     part_of=lambda i: job.image_split(cfg, i, pool[i].get("label")))
        units = job.cut_units(cfg, [Pair(*p) for p in found])
        phase("mining")
        gen = job.generator_id(cfg)
        all_rows = [r for u, pairs in enumerate(units) for r in rows_of(cfg, u, pairs, pool, gen)]
        rows = len(all_rows)
        phase("unit_rows")
        n = len(pool)
    return {"mode": a.mode, "images": n, "pairs": rows, "units": len(units), "base_mb": round(base, 1),
            "phases": phases, "peak_mb": round(peak_mb(), 1), "growth_mb": round(peak_mb() - base, 1)}


def run_child(a, mode: str, cache: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--folder", a.folder, "--cache", str(cache), "--k", str(a.k)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def cpu_model() -> str:
    try:
        info = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        return platform.processor()
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("Model name")), "?")
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("Flags")), [])
    return f"{model}; {os.cpu_count()} CPUs; " + " ".join(f for f in flags if f.startswith("avx"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--size", type=int, default=32, help="image side in pixels")
    p.add_argument("--labels", type=int, default=1000)
    p.add_argument("--k", type=int, default=2, help="pairs per image (label mining)")
    p.add_argument("--modes", default="streamed,memory")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--folder", help=argparse.SUPPRESS)
    p.add_argument("--cache", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        a.mode = a.child
        print(json.dumps(child(a)))
        return
    work = Path(tempfile.mkdtemp(prefix="cf-poolbench-"))
    try:
        t = time.perf_counter()
        total = make_folder(work / "images", a.n, a.size, a.labels)
        print(f"cpu: {cpu_model()}")
        print(f"wrote {a.n} PNGs of {a.size} px ({total / 1e6:.1f} MB) in {time.perf_counter() - t:.0f} s")
        link_subset(work / "images", work / "quarter", a.n // 4)
        res, small = {}, {}
        for m in a.modes.split(","):
            a.folder = str(work / "quarter")
            small[m] = run_child(a, m, work / f"cache-q-{m}")
            a.folder = str(work / "images")
            res[m] = run_child(a, m, work / f"cache-{m}")
        for m, r in res.items():
            q = small[m]
            slope = (r["growth_mb"] - q["growth_mb"]) * 1e6 / (r["images"] - q["images"])
            print(f"{m:>8}: {r['images']} images, {r['pairs']} rows in {r['units']} units; RSS after imports "
                  f"{r['base_mb']} MB, peak {r['peak_mb']} MB, growth {r['growth_mb']} MB "
                  f"({q['images']} images: {q['growth_mb']} MB); phases {r['phases']}")
            one_m = r["growth_mb"] + slope * (1e6 - r["images"]) / 1e6
            print(f"{'':>8}  slope ({r['growth_mb']} - {q['growth_mb']}) MB / {r['images'] - q['images']} images = "
                  f"{slope:.0f} B/image; 1M images: {r['growth_mb']} MB + {slope:.0f} B x {1e6 - r['images']:.0f} "
                  f"= {one_m / 1e3:.2f} GB above imports")
        if {"streamed", "memory"} <= set(res):
            s, m = res["streamed"]["growth_mb"], res["memory"]["growth_mb"]
            print(f"growth ratio memory / streamed: {m / max(s, 1e-9):.1f}x")
        print(json.dumps({"n": a.n, "size": a.size, "image_mb": round(total / 1e6, 1), "results": res,
                          "quarter": small}))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
