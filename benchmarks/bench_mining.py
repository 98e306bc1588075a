"""Pair-mining search speed: cirforge's blockwise torch top-k vs faiss, exact and approximate.

  exact (CPU):  python benchmarks/bench_mining.py exact --n 100000 --threads 2
  exact (GPU):  python benchmarks/bench_mining.py exact --device cuda --n 1000000 --no-faiss
  approximate:  python benchmarks/bench_mining.py ann --n 1000000 --threads 2
  smoke test:   python benchmarks/bench_mining.py exact --n 5000 ; ... ann --n 20000

Each method runs in its own child process, so its peak RSS (ru_maxrss) is its own. Embeddings are
random normalized vectors (exact); clustered ones for the approximate index, since on
structureless random vectors no index beats a full scan. Pairs/s = queries x k / seconds.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def random_unit(n: int, d: int, seed: int) -> np.ndarray:
    """n random unit vectors, made in chunks (no float64 copy of the whole array)."""
    rng = np.random.default_rng(seed)
    x = np.empty((n, d), np.float32)
    for s in range(0, n, 65536):
        c = rng.standard_normal((min(65536, n - s), d), dtype=np.float32)
        x[s:s + len(c)] = c / np.linalg.norm(c, axis=1, keepdims=True)
    return x


def clustered_unit(n: int, d: int, seed: int, clusters: int, spread: float = 1.0) -> np.ndarray:
    """n unit vectors around `clusters` random centres (cosine to the centre about 0.7)."""
    rng = np.random.default_rng(seed)
    centres = random_unit(clusters, d, seed + 1)
    x = np.empty((n, d), np.float32)
    for s in range(0, n, 65536):
        m = min(65536, n - s)
        c = centres[rng.integers(0, clusters, m)] + spread * rng.standard_normal((m, d), dtype=np.float32) / np.sqrt(d)
        x[s:s + m] = c / np.linalg.norm(c, axis=1, keepdims=True)
    return x


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- workers (each in a child process) -----------------------------------------------------------
def worker_exact(a) -> dict:
    import torch

    torch.set_num_threads(a.threads)
    if a.method == "faiss":
        import faiss

        faiss.omp_set_num_threads(a.threads)
        x = random_unit(a.n, a.d, a.seed)
        t = time.perf_counter()
        index = faiss.IndexFlatIP(a.d)
        index.add(x)
        vals, idx = index.search(x, a.k + 1)  # +1: each query finds itself first
        secs = time.perf_counter() - t
        vals, idx = vals[:, 1:], idx[:, 1:]
    else:
        from pipeline.mining.search import resolve_device, topk_self

        dev = resolve_device(a.device)
        if dev.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = a.tf32
            g = torch.Generator(device=dev).manual_seed(a.seed)
            x = torch.randn(a.n, a.d, device=dev, generator=g)
            x /= x.norm(dim=1, keepdim=True)
            topk_self(x[:4096], a.k, block_size=a.block, device=dev)  # warm-up: CUDA context, kernels
            torch.cuda.synchronize()
        else:
            x = random_unit(a.n, a.d, a.seed)
        t = time.perf_counter()
        vals, idx = topk_self(x, a.k, block_size=a.block, device=dev)
        secs = time.perf_counter() - t
    out = {"method": a.method, "block": a.block, "seconds": round(secs, 2), "pairs_per_s": round(a.n * a.k / secs),
           "peak_rss_mb": round(peak_rss_mb())}
    if a.device != "cpu" and a.method == "torch":
        import torch

        out["gpu_peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
        out["tf32"] = a.tf32
    if a.check:
        np.save(a.check, idx)
    return out


def worker_ann(a) -> dict:
    import faiss
    import torch

    from pipeline.mining.search import topk_search

    torch.set_num_threads(a.threads)
    faiss.omp_set_num_threads(a.threads)
    x = clustered_unit(a.n, a.d, a.seed, clusters=max(10, a.n // 500))
    q = np.random.default_rng(a.seed + 7).choice(a.n, size=min(a.queries, a.n), replace=False)
    # 1. the exact answer for the sample queries (self excluded), by the blockwise search
    t = time.perf_counter()
    _, exact = topk_search(x[q], x, a.k, block_size=4096, exclude=q)
    exact_s = time.perf_counter() - t
    # 2. IVF-Flat: train on a sample, add everything
    nlist = a.nlist or int(4 * np.sqrt(a.n))
    t = time.perf_counter()
    quant = faiss.IndexFlatIP(a.d)
    index = faiss.IndexIVFFlat(quant, a.d, nlist, faiss.METRIC_INNER_PRODUCT)
    train = x[np.random.default_rng(a.seed).choice(a.n, size=min(a.n, 40 * nlist), replace=False)]
    index.train(train)
    del train
    index.add(x)
    build_s = time.perf_counter() - t
    # 3. the smallest nprobe that reaches the recall goal
    sweep = []
    for nprobe in (1, 2, 4, 8, 16, 32, 64, 128):
        index.nprobe = nprobe
        t = time.perf_counter()
        _, found = index.search(x[q], a.k + 1)
        search_s = time.perf_counter() - t
        found = [[j for j in row if j != qi][: a.k] for row, qi in zip(found, q)]
        recall = float(np.mean([len(set(f) & set(e)) / a.k for f, e in zip(found, exact)]))
        sweep.append({"nprobe": nprobe, "recall_at_k": round(recall, 4), "search_s": round(search_s, 2),
                      "queries_per_s": round(len(q) / search_s)})
        if recall >= a.recall:
            break
    return {"method": "faiss IVFFlat", "n": a.n, "nlist": nlist, "queries": len(q), "exact_reference_s": round(exact_s, 1),
            "build_s": round(build_s, 1), "sweep": sweep, "peak_rss_mb": round(peak_rss_mb())}


# -- driver ----------------------------------------------------------------------------------
def child(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"worker {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["exact", "ann"])
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--d", type=int, default=512)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--blocks", default="4096", help="comma-separated block sizes to try (torch path)")
    p.add_argument("--tf32", action="store_true", help="GPU: TF32 matmul (not bit-exact fp32)")
    p.add_argument("--no-faiss", action="store_true", help="skip faiss (e.g. on a GPU box without it)")
    p.add_argument("--queries", type=int, default=10_000, help="ann: sample queries for recall")
    p.add_argument("--nlist", type=int, default=0, help="ann: IVF lists (default 4 sqrt(n))")
    p.add_argument("--recall", type=float, default=0.95)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--worker", choices=["faiss", "torch", "ann"], help=argparse.SUPPRESS)
    p.add_argument("--block", type=int, default=4096, help=argparse.SUPPRESS)
    p.add_argument("--check", default="", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        a.method = a.worker
        print(json.dumps(worker_ann(a) if a.worker == "ann" else worker_exact(a)))
        return
    base = [a.mode, f"--n={a.n}", f"--d={a.d}", f"--k={a.k}", f"--threads={a.threads}", f"--device={a.device}",
            f"--seed={a.seed}"] + (["--tf32"] if a.tf32 else [])
    print(f"# {a.mode}: n={a.n} d={a.d} k={a.k} threads={a.threads} device={a.device} "
          f"(cpu count {os.cpu_count()})", flush=True)
    if a.mode == "ann":
        print(json.dumps(child(base + ["--worker=ann", f"--queries={a.queries}", f"--nlist={a.nlist}",
                                       f"--recall={a.recall}"])), flush=True)
        return
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    results = []
    if not a.no_faiss:
        results.append(child(base + ["--worker=faiss", f"--check={tmp / 'bench_faiss_idx.npy'}"]))
        print(json.dumps(results[-1]), flush=True)
    for b in [int(v) for v in a.blocks.split(",")]:
        results.append(child(base + ["--worker=torch", f"--block={b}", f"--check={tmp / 'bench_torch_idx.npy'}"]))
        r = results[-1]
        if not a.no_faiss:
            same = np.load(tmp / "bench_faiss_idx.npy") == np.load(tmp / "bench_torch_idx.npy")
            r["same_neighbours_as_faiss"] = round(float(same.mean()), 6)  # < 1 only by float ties
            r["speedup_vs_faiss"] = round(results[0]["seconds"] / r["seconds"], 2)
        print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
