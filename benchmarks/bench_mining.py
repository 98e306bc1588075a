"""Pair-mining search speed: cirforge's blockwise torch top-k vs faiss, exact and approximate.

  exact (CPU):  python benchmarks/bench_mining.py exact --n 100000 --threads 2
  exact (GPU):  python benchmarks/bench_mining.py exact --device cuda --n 1000000 --no-faiss --blocks 16384 \
                    --matmul fp32,tf32 --naive
  approximate:  python benchmarks/bench_mining.py ann --n 1000000 --threads 2
  smoke test:   python benchmarks/bench_mining.py exact --n 5000 ; ... ann --n 20000

Each method runs in its own child process, so its peak RSS (ru_maxrss) is its own. Embeddings are
random normalized vectors (exact); clustered ones for the approximate index, since on
structureless random vectors no index beats a full scan. Pairs/s = queries x k / seconds.
`--naive` adds the plain baseline in the same run: per query block, matmul against key chunks and
a full `topk` of every row (no symmetry, no group pruning), e.g. where faiss is not installed.
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


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def naive_topk_self(x, k: int, q_block: int, k_block: int):
    """The plain baseline: (query block x key chunk) matmul, row topk, merge; self excluded."""
    import torch

    n = x.shape[0]
    vals = torch.empty(n, k, device=x.device)
    idx = torch.empty(n, k, dtype=torch.int64, device=x.device)
    for i0 in range(0, n, q_block):
        q = x[i0:i0 + q_block]
        rows = torch.arange(q.shape[0], device=x.device)
        best_v = best_i = None
        for j0 in range(0, n, k_block):
            S = q @ x[j0:j0 + k_block].T
            own = rows + i0 - j0  # the query's own column in this chunk
            inside = (own >= 0) & (own < S.shape[1])
            S[rows[inside], own[inside]] = float("-inf")
            v, i = S.topk(k, dim=1)
            i += j0
            if best_v is not None:
                v, j = torch.cat([best_v, v], 1).topk(k, dim=1)
                i = torch.cat([best_i, i], 1).gather(1, j)
            best_v, best_i = v, i
        vals[i0:i0 + q.shape[0]], idx[i0:i0 + q.shape[0]] = best_v, best_i
    return vals.cpu().numpy(), idx.cpu().numpy()


# -- workers (each in a child process) -----------------------------------------------------------
def worker_exact(a) -> dict:
    import torch

    torch.set_num_threads(a.threads)
    if a.method == "faiss":
        import faiss

        faiss.omp_set_num_threads(a.threads)
        x = random_unit(a.n, a.d, a.seed)
        c, t = cpu_seconds(), time.perf_counter()
        index = faiss.IndexFlatIP(a.d)
        index.add(x)
        vals, idx = index.search(x, a.k + 1)  # +1: each query finds itself first
        secs = time.perf_counter() - t
        vals, idx = vals[:, 1:], idx[:, 1:]
    else:
        from pipeline.mining.search import resolve_device, topk_self

        dev = resolve_device(a.device)
        if a.method == "naive":
            def search(v):
                return naive_topk_self(torch.as_tensor(v, device=dev), a.k, a.q_block, a.k_block)
        else:
            def search(v):
                return topk_self(v, a.k, block_size=a.block, device=dev, cpu_gemm=a.cpu_gemm, precision=a.precision)
        if dev.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = a.tf32
            g = torch.Generator(device=dev).manual_seed(a.seed)
            x = torch.randn(a.n, a.d, device=dev, generator=g)
            x /= x.norm(dim=1, keepdim=True)
            search(x[:2 * min(a.block, a.q_block)])  # warm-up: CUDA context, kernels, cuBLAS handles
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        else:
            x = random_unit(a.n, a.d, a.seed)
        c, t = cpu_seconds(), time.perf_counter()
        vals, idx = search(x)  # returns numpy arrays: the device work is finished
        secs = time.perf_counter() - t
    out = {"method": a.method, "seconds": round(secs, 2), "pairs_per_s": round(a.n * a.k / secs),
           "peak_rss_mb": round(peak_rss_mb())}
    out["cpu_s"] = round(cpu_seconds() - c, 1)  # user + sys, all threads: less sensitive to other load
    if a.method == "torch":
        out["block"] = a.block
        out["precision"] = a.precision
        if a.device == "cpu" and a.precision != "bfloat16":
            out["cpu_gemm"] = a.cpu_gemm
    elif a.method == "naive":
        out["blocks"] = f"{a.q_block} queries x {a.k_block} keys"
    if a.device != "cpu" and a.method != "faiss":
        out["gpu_peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
        out["matmul"] = "tf32" if a.tf32 else "fp32"
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
def child(args: list[str], threads: int) -> dict:
    # numpy's OpenBLAS reads its thread count at import: the same number of threads for every library
    env = {**os.environ, "OPENBLAS_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=False, env=env)
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
    p.add_argument("--matmul", default="fp32", help="GPU: comma list of fp32, tf32 (TF32 is not bit-exact fp32)")
    p.add_argument("--tf32", action="store_true", help="GPU: same as --matmul tf32")
    p.add_argument("--no-faiss", action="store_true", help="skip faiss (e.g. on a GPU box without it)")
    p.add_argument("--cpu-gemm", default="torch", help="CPU: comma list of numpy, torch (tile product library)")
    p.add_argument("--precision", default="float32",
                   help="torch path: comma list of float32, bfloat16 (bf16 candidates + exact float32 rerank), auto")
    p.add_argument("--naive", action="store_true", help="also time the plain matmul + full-row topk baseline")
    p.add_argument("--q-block", type=int, default=4096, help="naive baseline: queries per block")
    p.add_argument("--k-block", type=int, default=131072, help="naive baseline: keys per matmul chunk")
    p.add_argument("--queries", type=int, default=10_000, help="ann: sample queries for recall")
    p.add_argument("--nlist", type=int, default=0, help="ann: IVF lists (default 4 sqrt(n))")
    p.add_argument("--recall", type=float, default=0.95)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="", help="also write all results as JSON here")
    p.add_argument("--worker", choices=["faiss", "torch", "naive", "ann"], help=argparse.SUPPRESS)
    p.add_argument("--block", type=int, default=4096, help=argparse.SUPPRESS)
    p.add_argument("--check", default="", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        a.method = a.worker
        print(json.dumps(worker_ann(a) if a.worker == "ann" else worker_exact(a)))
        return
    base = [a.mode, f"--n={a.n}", f"--d={a.d}", f"--k={a.k}", f"--threads={a.threads}", f"--device={a.device}",
            f"--seed={a.seed}"]
    print(f"# {a.mode}: n={a.n} d={a.d} k={a.k} threads={a.threads} device={a.device} "
          f"(cpu count {os.cpu_count()}, load average {os.getloadavg()[0]:.2f})", flush=True)
    if a.mode == "ann":
        print(json.dumps(child(base + ["--worker=ann", f"--queries={a.queries}", f"--nlist={a.nlist}",
                                       f"--recall={a.recall}"], a.threads)), flush=True)
        return
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    precisions = ["tf32"] if a.tf32 else a.matmul.split(",")
    if a.device == "cpu":
        precisions = ["fp32"]  # TF32 is a GPU matmul mode
    runs = []  # (label, worker args): the baseline first, then cirforge's path
    if not a.no_faiss:
        runs.append(("faiss", ["--worker=faiss"]))
    for prec in precisions:
        flag = ["--tf32"] if prec == "tf32" else []
        if a.naive:
            runs.append((f"naive/{prec}", ["--worker=naive", f"--q-block={a.q_block}", f"--k-block={a.k_block}",
                                           *flag]))
        for b in [int(v) for v in a.blocks.split(",")]:
            for sp in a.precision.split(","):
                gemms = a.cpu_gemm.split(",") if a.device == "cpu" and sp != "bfloat16" else ["torch"]
                for gemm in gemms:
                    runs.append((f"torch/{prec}", ["--worker=torch", f"--block={b}", f"--cpu-gemm={gemm}",
                                                   f"--precision={sp}", *flag]))
    results = []
    first: dict[str, dict] = {}  # the first result of each baseline kind, and where its indices are
    for label, extra in runs:
        check = tmp / f"bench_mining_{len(results)}.npy"
        r = child(base + extra + [f"--check={check}"], a.threads)
        r["check"] = check
        prec = label.split("/")[-1]
        # Compare with faiss (CPU), else with the naive run of the same precision.
        ref = first.get("faiss") or first.get(f"naive/{prec}")
        if ref is not None:
            same = np.load(ref["check"]) == np.load(check)
            name = "faiss" if "faiss" in first else "naive"
            r[f"same_neighbours_as_{name}"] = round(float(same.mean()), 6)  # < 1 only by float ties
            r[f"speedup_vs_{name}"] = round(ref["seconds"] / r["seconds"], 2)
        if label == "faiss" or label.startswith("naive/"):
            first.setdefault(label, r)
        results.append(r)
        print(json.dumps({k: v for k, v in r.items() if k != "check"}), flush=True)
    for r in results:
        Path(r.pop("check")).unlink(missing_ok=True)
    if a.out:
        Path(a.out).write_text(json.dumps(results, indent=1))

if __name__ == "__main__":
    main()
