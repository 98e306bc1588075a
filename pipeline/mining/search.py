"""Exact top-k inner-product search in blocks (torch, any device), memory bounded by the block size.

Two things make it fast on CPU: a pool searched against itself computes each block pair once
and reduces it both ways (the similarity matrix is symmetric: half the matmul work), and each
block is reduced by group maxima first, so the full ``topk`` only sees a few candidate groups.
Matmul output buffers are allocated once: fresh multi-MB outputs cost page faults every block.
On CPU the tile product can also go through numpy's BLAS (``cpu_gemm="numpy"``; OpenBLAS in
numpy's wheels: its sgemm ran about 10% faster per core than torch's MKL on the 2-core AMD dev
machine), torch's reductions then running on one thread: torch's OpenMP threads spinning beside
BLAS's threads made both slower. Which is faster on a quiet machine is not settled
(docs/benchmarks.md), so torch's stays the default. On a CPU with bf16 units (AVX512-BF16, AMX)
``precision="bfloat16"`` (what ``auto`` picks there) runs the tile products in bf16 and proves the
float32 answer afterwards (``_topk_self_bf16``): a bf16 product ran ~2.8x faster than float32.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch

NEG_INF = float("-inf")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``auto``/None -> cuda when available, else cpu."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _group_size(n: int, k: int) -> int:
    # Groups pay off while a row has many more groups than k; g=32 measured best on 2 CPU cores.
    for g in (32, 16, 8):
        if n % g == 0 and n // g >= 4 * k:
            return g
    return 1


def _row_topk(S: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k along dim 1 of S (rows, n): values and column indices; exact (ties aside)."""
    rows, n = S.shape
    k = min(k, n)
    g = _group_size(n, k)
    if g == 1:
        return S.topk(k, dim=1)
    # The top-k values of a row lie in at most k groups, each with a max >= the k-th value.
    _, gi = S.view(rows, n // g, g).amax(-1).topk(k, dim=1)
    cols = (gi.unsqueeze(-1) * g + torch.arange(g, device=S.device)).view(rows, k * g)
    v, j = S.gather(1, cols).topk(k, dim=1)
    return v, cols.gather(1, j)


def _col_topk(S: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k along dim 0 of S (n, cols), returned as (cols, k): the transposed tile's row top-k."""
    n, cols = S.shape
    k = min(k, n)
    g = _group_size(n, k)
    if g == 1:
        v, i = S.topk(k, dim=0)
        return v.T, i.T
    _, gi = S.view(n // g, g, cols).amax(1).topk(k, dim=0)  # (k, cols): best groups per column
    rows = (gi.unsqueeze(1) * g + torch.arange(g, device=S.device).view(1, g, 1)).reshape(k * g, cols)
    cand = S.gather(0, rows).T.contiguous()  # (cols, k*g)
    v, j = cand.topk(k, dim=1)
    return v, rows.T.gather(1, j)


class _Running:
    """The best k (value, index) per row so far, for all rows; merged block by block."""

    def __init__(self, n: int, k: int, device: torch.device):
        self.k = k
        self.vals = torch.full((n, k), NEG_INF, device=device)
        self.idx = torch.full((n, k), -1, dtype=torch.int64, device=device)

    def kth(self, start: int, end: int) -> torch.Tensor:
        """The current k-th best value of rows start..end: anything not above it cannot enter."""
        return self.vals[start:end, self.k - 1]

    def merge_dense(self, start: int, v: torch.Tensor, i: torch.Tensor) -> None:
        end = start + v.shape[0]
        cv = torch.cat([self.vals[start:end], v], dim=1)
        ci = torch.cat([self.idx[start:end], i], dim=1)
        bv, j = cv.topk(self.k, dim=1)
        self.vals[start:end] = bv
        self.idx[start:end] = ci.gather(1, j)

    def merge_sparse(self, start: int, rows: torch.Tensor, v: torch.Tensor, i: torch.Tensor) -> None:
        """Merge a few (row, value, index) candidates: only the rows that have any are touched."""
        order = torch.argsort(rows, stable=True)
        rows, v, i = rows[order], v[order], i[order]
        urows, counts = torch.unique_consecutive(rows, return_counts=True)
        local = torch.repeat_interleave(torch.arange(urows.numel(), device=rows.device), counts)
        slot = torch.arange(rows.numel(), device=rows.device) - (torch.cumsum(counts, 0) - counts)[local]
        width = int(counts.max())
        dv = torch.full((urows.numel(), width), NEG_INF, device=v.device)
        di = torch.zeros((urows.numel(), width), dtype=torch.int64, device=v.device)
        dv[local, slot] = v
        di[local, slot] = i
        at = urows + start
        bv, j = torch.cat([self.vals[at], dv], dim=1).topk(self.k, dim=1)
        self.vals[at] = bv
        self.idx[at] = torch.cat([self.idx[at], di], dim=1).gather(1, j)

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        idx = torch.where(torch.isfinite(self.vals), self.idx, torch.full_like(self.idx, -1))
        return self.vals.cpu().numpy(), idx.cpu().numpy()


def _as_tensor(x, device: torch.device) -> torch.Tensor:
    t = torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32)) if isinstance(x, np.ndarray) else x.detach().float()
    return t.to(device).contiguous()


def _mask_band(S: torch.Tensor, band: tuple[float, float] | None) -> None:
    if band is not None:
        lo, hi = band
        S.masked_fill_((S < lo) | (S > hi), NEG_INF)


def _update(run: _Running, S: torch.Tensor, start: int, offset: int, band, by_column: bool) -> None:
    """Merge a tile into the running top-k of its rows (or, by_column, of its columns).

    Once a row holds k values, only groups of 32 whose maximum reaches the row's k-th value can
    change it: one max-reduction pass finds those few groups, instead of a top-k over the tile.
    """
    n, m = (S.shape[1], S.shape[0]) if by_column else S.shape
    kth = run.kth(start, start + n)
    g = _group_size(m, run.k)
    if g > 1 and (band is not None or bool(torch.isfinite(kth).all())):
        thr = kth if band is None else torch.clamp(kth, min=band[0])
        # Row groups of bf16 tiles are strided (column c + j * m/g, j < g): torch's CPU max over a
        # contiguous bf16 inner dim ran 6x slower than over a strided one (16.9 vs 1.9 ms a tile).
        strided = not by_column and S.dtype == torch.bfloat16
        if by_column:
            groups = S.view(m // g, g, n)
            grp, row = (groups.amax(1) >= thr.unsqueeze(0)).nonzero(as_tuple=True)  # (m/g, n) layout
        elif strided:
            groups = S.view(n, g, m // g)
            row, grp = (groups.amax(1) >= thr.unsqueeze(1)).nonzero(as_tuple=True)
        else:
            groups = S.view(n, m // g, g)
            row, grp = (groups.amax(2) >= thr.unsqueeze(1)).nonzero(as_tuple=True)
        if row.numel() == 0:
            return
        # Sparse unless most groups hit: a dense top-k over a 4096-wide tile costs 33-77 ms.
        if row.numel() <= n * max(4, m // g // 2):
            vals = groups[grp, :, row] if by_column else groups[row, :, grp] if strided else groups[row, grp]
            if band is not None:
                vals = vals.masked_fill((vals < band[0]) | (vals > band[1]), NEG_INF)
            # Of a hit group, only the values reaching the row's k-th can enter: usually one or two.
            h, e = (vals >= thr[row].unsqueeze(1)).nonzero(as_tuple=True)
            if h.numel():
                col = e * (m // g) + grp[h] if strided else grp[h] * g + e
                run.merge_sparse(start, row[h], vals[h, e].float(), col + offset)
            return
    _mask_band(S, band)
    v, i = _col_topk(S, run.k) if by_column else _row_topk(S, run.k)
    run.merge_dense(start, v.float(), i + offset)


def _tile(buf: torch.Tensor, a: torch.Tensor, b: torch.Tensor, gemm: str = "torch") -> torch.Tensor:
    # A contiguous view of the first rows*cols elements: the product is written into it without allocating.
    S = buf.view(-1)[: a.shape[0] * b.shape[0]].view(a.shape[0], b.shape[0])
    if gemm == "numpy":
        np.matmul(a.numpy(), b.numpy().T, out=S.numpy())  # shares memory with the tensors: no copies
    else:
        torch.mm(a, b.T, out=S)
    return S


GEMMS = ("numpy", "torch")


@contextlib.contextmanager
def _cpu_gemm(dev: torch.device, gemm: str) -> Iterator[str]:
    """The tile product's library for this device; with numpy's BLAS, torch keeps to one thread."""
    if gemm not in GEMMS:
        raise ValueError(f"cpu_gemm={gemm!r} is not known; use one of {', '.join(GEMMS)}")
    if dev.type != "cpu" or gemm == "torch":
        yield "torch"
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield "numpy"
    finally:
        torch.set_num_threads(threads)


PRECISIONS = ("auto", "float32", "bfloat16")
_BF16_U = 2.0**-8  # unit roundoff of bfloat16 (8 significant bits)
_FP32_U = 2.0**-24
BF16_EXTRA = 16  # candidates kept per row beyond k by the bf16 pass


def resolve_precision(precision: str, dev: torch.device) -> str:
    """``auto`` -> bfloat16 on a CPU with bf16 instructions (AVX512-BF16 or AMX), else float32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r} is not known; use one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    return "bfloat16" if dev.type == "cpu" and _cpu_has_bf16() else "float32"


def _cpu_has_bf16() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def topk_self(x, k: int, *, block_size: int = 4096, band: tuple[float, float] | None = None,
              device: str | torch.device | None = "cpu", cpu_gemm: str = "torch",
              precision: str = "float32") -> tuple[np.ndarray, np.ndarray]:
    """For every row of ``x`` (n, d), its k best other rows by inner product.

    Returns (values float32 (n, k), indices int64 (n, k)), best first; with ``band=(lo, hi)``
    only similarities in [lo, hi] count, and missing slots are (-inf, -1). ``cpu_gemm``: the
    library of the tile product on CPU, numpy's BLAS or torch's. ``precision="bfloat16"`` (or
    ``"auto"`` on a CPU with bf16 instructions) finds candidates with bf16 tile products and
    reranks them in float32 with a proven error bound: the same exact answer, a third of the
    matmul time where the CPU has bf16 units (``_topk_self_bf16``).
    """
    dev = resolve_device(device)
    x = _as_tensor(x, dev)
    if resolve_precision(precision, dev) == "bfloat16":
        return _topk_self_bf16(x, k, block_size, band)
    run = _Running(x.shape[0], k, dev)
    with _cpu_gemm(dev, cpu_gemm) as gemm:
        _self_blocks(run, x, block_size, band, gemm)
    return run.result()


def _self_blocks(run: _Running, x: torch.Tensor, block_size: int, band, gemm: str = "torch") -> None:
    """Merge every block pair of x against itself into ``run`` once, both ways (x's dtype)."""
    n = x.shape[0]
    buf = torch.empty(min(block_size, n) ** 2, device=x.device, dtype=x.dtype)
    starts = list(range(0, n, block_size))
    # The diagonal tiles first: every row then has k values before any off-diagonal tile, so those
    # are all merged through the cheap threshold path (a dense column top-k of a first-touched block
    # cost 77 ms a tile, a dense row top-k 33 ms).
    pairs = [(i0, i0) for i0 in starts] + [(i0, j0) for bi, i0 in enumerate(starts) for j0 in starts[bi + 1:]]
    for i0, j0 in pairs:
        S = _tile(buf, x[i0:i0 + block_size], x[j0:j0 + block_size], gemm)
        if i0 == j0:
            S.fill_diagonal_(NEG_INF)
        _update(run, S, i0, j0, band, by_column=False)
        if i0 != j0:
            _update(run, S, j0, i0, band, by_column=True)


def _topk_self_bf16(x: torch.Tensor, k: int, block_size: int, band) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k through a bfloat16 first pass, a float32 rerank and a proof per row.

    Write each row as x = h + l with h = bf16(x). A bf16 tile product gives s' = bf16(h_i . h_j)
    (float32 accumulation, as torch's CPU bf16 GEMMs do; on CUDA reduced-precision reductions are
    turned off for the pass), and |h_i . h_j - x_i . x_j| <= e_i = |h_i| L + |l_i| H + |l_i| L
    + gamma |h_i| H (Cauchy-Schwarz; H, L the largest |h|, |l| in the pool; gamma the float32
    summation bound), while the output rounding moves a value v by at most u |v| / (1 - u). The
    first pass keeps each row's k + BF16_EXTRA best by s' (inside the band widened by those
    bounds), the rerank computes their float32 products and keeps the best k. A row is proven
    when its pass-1 list was not full, or when the largest exact value anything it dropped could
    have (its last s' plus the bounds) is below the k-th reranked value; every other row is
    searched again in float32 (on 100k random unit vectors, 67 rows).
    """
    n, d = x.shape
    dev = x.device
    kp = k + BF16_EXTRA  # a smaller pool leaves -inf slots: the list is not full, the row is proven
    h = x.to(torch.bfloat16)
    hf = h.float()
    nh, nl = hf.norm(dim=1), (x - hf).norm(dim=1)
    del hf
    big_h, big_l = float(nh.max()), float(nl.max())
    gamma = d * _FP32_U / (1 - d * _FP32_U)
    err = nh * big_l + nl * big_h + nl * big_l + gamma * nh * big_h  # per row, over every other row
    wide = None
    if band is not None:
        e, edge = float(err.max()), max(abs(band[0]), abs(band[1]))
        w = e + _BF16_U * (edge + e) / (1 - _BF16_U)
        wide = (band[0] - w, band[1] + w)
    run = _Running(n, kp, dev)
    cuda = torch.backends.cuda.matmul
    reduced = cuda.allow_bf16_reduced_precision_reduction
    cuda.allow_bf16_reduced_precision_reduction = False  # the bound needs float32 accumulation
    try:
        _self_blocks(run, h, block_size, wide)
    finally:
        cuda.allow_bf16_reduced_precision_reduction = reduced
    # rerank in float32, a chunk of rows at a time (memory: chunk x kp x d floats)
    cand = run.idx
    vals = torch.full((n, k), NEG_INF, device=dev)
    idx = torch.full((n, k), -1, dtype=torch.int64, device=dev)
    chunk = max(1, (1 << 23) // (kp * d))
    for s in range(0, n, chunk):
        c = cand[s:s + chunk]
        exact = torch.bmm(x[c.clamp(min=0)], x[s:s + chunk].unsqueeze(2)).squeeze(2)
        exact.masked_fill_(~torch.isfinite(run.vals[s:s + chunk]), NEG_INF)  # empty slots (and the diagonal)
        _mask_band(exact, band)
        v, j = exact.topk(k, dim=1)
        vals[s:s + chunk], idx[s:s + chunk] = v, torch.where(torch.isfinite(v), c.gather(1, j), -1)
    last = run.vals[:, kp - 1]  # s' of the worst kept candidate: every dropped one has s' <= it
    bound = last + _BF16_U * last.abs() / (1 - _BF16_U) + err
    proven = ~torch.isfinite(last) | (bound < vals[:, k - 1])
    redo = (~proven).nonzero().squeeze(1)
    if redo.numel():
        rv, ri = topk_search(x[redo], x, k, block_size=block_size, exclude=redo.cpu().numpy(), band=band,
                             device=dev)
        vals[redo], idx[redo] = torch.as_tensor(rv, device=dev), torch.as_tensor(ri, device=dev)
    return vals.cpu().numpy(), idx.cpu().numpy()


def topk_search(queries, keys, k: int, *, block_size: int = 4096, exclude: np.ndarray | None = None,
                band: tuple[float, float] | None = None,
                device: str | torch.device | None = "cpu", cpu_gemm: str = "torch") -> tuple[np.ndarray, np.ndarray]:
    """For every query row, its k best key rows by inner product (exact, in query x key blocks).

    ``exclude[q]`` is a key index never returned for query q (e.g. the query itself), or -1.
    """
    dev = resolve_device(device)
    q, kx = _as_tensor(queries, dev), _as_tensor(keys, dev)
    run = _Running(q.shape[0], k, dev)
    buf = torch.empty(min(block_size, q.shape[0]) * min(block_size, kx.shape[0]), device=dev)
    ex = None if exclude is None else torch.as_tensor(np.asarray(exclude, dtype=np.int64), device=dev)
    with _cpu_gemm(dev, cpu_gemm) as gemm:
        for i0 in range(0, q.shape[0], block_size):
            qi = q[i0:i0 + block_size]
            for j0 in range(0, kx.shape[0], block_size):
                S = _tile(buf, qi, kx[j0:j0 + block_size], gemm)
                if ex is not None:
                    e = ex[i0:i0 + qi.shape[0]] - j0
                    hit = (e >= 0) & (e < S.shape[1])
                    S[hit.nonzero().squeeze(1), e[hit]] = NEG_INF
                _update(run, S, i0, j0, band, by_column=False)
    return run.result()
