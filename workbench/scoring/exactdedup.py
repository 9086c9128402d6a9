"""All pairs of rows above a cosine threshold, tile by tile, joined by union-find; and the exact method.

The shared machinery of :mod:`workbench.scoring.dedup`: :class:`_Search` finds every pair of rows with
``sim >= threshold`` between two blocks of float32 unit rows (fast matmuls only *pre-filter*: pairs
within ``+-MARGIN`` of the threshold are decided in float64), :class:`_UnionFind` joins them into
connected components, and dense tiles are linked by label propagation instead of listing their pairs.
:func:`_exact` runs it over every pair of streamed chunks (O(n^2) work; memory two chunks + one tile).
The contract (similarity, threshold, memory) is stated in :mod:`workbench.scoring.dedup`.

torch is imported only when a search starts.
"""
from __future__ import annotations

import numpy as np

from workbench.errors import WorkbenchError
from workbench.io.collection import Collection
from workbench.io.kernels import normalize_rows
from workbench.io.progress import progress_bar

MARGIN = 0.02  # prefilter band around the threshold re-checked in float64 (bf16/TF32 error <= ~0.01)
TILE_ROWS = 1024  # rows per side of one similarity tile on the CPU (small: a diagonal tile computes both halves)
TILE_ROWS_GPU = 16384  # ... on a GPU (1 GiB as float32)
UNION_BUFFER = 1 << 23  # pairs buffered before they are folded into the union-find forest
DENSE_LINKS = 1 << 16  # a tile with more certain pairs than this (and 8 per row) is linked by label propagation
MAX_PROPAGATION = 16


# -------------------------------------------------------------------------------------------------
# Union-find
# -------------------------------------------------------------------------------------------------
def _min_label(u: np.ndarray, v: np.ndarray, m: int) -> np.ndarray:
    """Connected components of a graph on 0..m-1: the smallest node of each node's component.

    Hook-and-shortcut: every edge hooks the larger of its two roots onto the smaller (labels only
    decrease, so no cycles), then pointer doubling flattens the forest; repeated until no edge
    joins two roots. The root that survives is its component's smallest node.
    """
    lab = np.arange(m, dtype=np.int64)
    while len(u):
        lu, lv = lab[u], lab[v]
        lo, hi = np.minimum(lu, lv), np.maximum(lu, lv)
        cut = lo != hi
        if not cut.any():
            break
        u, v, lo, hi = u[cut], v[cut], lo[cut], hi[cut]  # joined edges stay joined: drop them
        np.minimum.at(lab, hi, lo)
        while True:
            nxt = lab[lab]
            if np.array_equal(nxt, lab):
                break
            lab = nxt
    return lab


class _UnionFind:
    """A forest over rows 0..n-1 fed pairs in batches; memory n int64 + the buffered pairs."""

    def __init__(self, n: int, buffer: int = UNION_BUFFER):
        self.parent = np.arange(n, dtype=np.int64)
        self.buffer = buffer
        self._i: list[np.ndarray] = []
        self._j: list[np.ndarray] = []
        self._held = 0

    def add(self, i: np.ndarray, j: np.ndarray) -> None:
        if len(i):
            self._i.append(np.asarray(i, dtype=np.int64))
            self._j.append(np.asarray(j, dtype=np.int64))
            self._held += len(i)
            if self._held >= self.buffer:
                self.flush()

    def _find(self, x: np.ndarray) -> np.ndarray:
        r = self.parent[x]
        while True:
            rr = self.parent[r]
            if np.array_equal(rr, r):
                return r
            r = rr

    def flush(self) -> None:
        if not self._held:
            return
        i, j = np.concatenate(self._i), np.concatenate(self._j)
        self._i, self._j, self._held = [], [], 0
        ri, rj = self._find(i), self._find(j)
        roots, inv = np.unique(np.concatenate([ri, rj]), return_inverse=True)
        new = roots[_min_label(inv[: len(i)], inv[len(i):], len(roots))]  # smallest old root of each merged set
        self.parent[roots] = new
        self.parent[i] = new[inv[: len(i)]]  # path compression of the endpoints
        self.parent[j] = new[inv[len(i):]]

    def labels(self) -> np.ndarray:
        self.flush()
        p = self.parent
        while True:
            nxt = p[p]
            if np.array_equal(nxt, p):
                return p
            p = nxt


def components(pairs_i, pairs_j, n: int) -> np.ndarray:
    """Union-find over the pairs (i, j) of rows 0..n-1: the smallest row id of each row's component."""
    pairs_i = np.asarray(pairs_i, dtype=np.int64).ravel()
    pairs_j = np.asarray(pairs_j, dtype=np.int64).ravel()
    if pairs_i.shape != pairs_j.shape:
        raise WorkbenchError(f"pairs_i and pairs_j differ in length ({len(pairs_i)} vs {len(pairs_j)})")
    n = int(n)
    if n < 0:
        raise WorkbenchError(f"n must be >= 0, got {n}")
    if len(pairs_i) and (min(pairs_i.min(), pairs_j.min()) < 0 or max(pairs_i.max(), pairs_j.max()) >= n):
        raise WorkbenchError(f"pair row ids must lie in 0..{n - 1}")
    uf = _UnionFind(n)
    uf.add(pairs_i, pairs_j)
    return uf.labels()


# -------------------------------------------------------------------------------------------------
# Pair search
# -------------------------------------------------------------------------------------------------
def _torch():
    import torch

    return torch



def _fast_dtype(torch, device: str):
    """bfloat16 on CPUs with native support (2-3x float32's matmul speed); float32 elsewhere."""
    if device == "cpu":
        try:
            if torch.ops.mkldnn._is_mkldnn_bf16_supported():
                return torch.bfloat16
        except (AttributeError, RuntimeError):  # pragma: no cover
            pass
    return torch.float32


def _dot64(x: np.ndarray, y: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Exact-ish similarities of row pairs: float64 dot products of the float32 rows."""
    out = np.empty(len(i), np.float64)
    for s in range(0, len(i), 1 << 16):
        a = x[i[s : s + (1 << 16)]].astype(np.float64)
        out[s : s + len(a)] = np.einsum("ij,ij->i", a, y[j[s : s + len(a)]].astype(np.float64))
    return out


def _bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns (int16), rounded to nearest even, in numpy (no thread pool)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    return ((u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)).astype(np.uint16).view(np.int16)


def _bf16_ceil_bits(v: float) -> int:
    """The bit pattern (as int16) of the smallest bfloat16 >= v, for v > 0."""
    hb = int(np.array(v, np.float32).view(np.uint32)) >> 16
    if float(np.array(hb << 16, np.uint32).view(np.float32)) < v:
        hb += 1
    return hb


_NEG2_BITS = np.int16(-16384)  # bfloat16 -2.0 (0xC000)
_SMALL = 1 << 20  # blocks up to this many values are converted in numpy: one torch op fewer per tile


class _Search:
    """All pairs >= threshold between blocks of unit rows, tile by tile; adds them to a union-find.

    One torch op per tile on the CPU (the matmul): with few cores, each parallel op pays a thread
    barrier (milliseconds when the machine is shared), so conversions and scans are numpy. Positive
    bfloat16 values order like their bit patterns, so the row scan runs on the int16 bits.
    `low` arrays (int64 (m, q), -1 = empty) hold, per row, the clusters it belongs to that come
    before the one being searched: a pair whose rows share one of those is not canonical here.
    """

    def __init__(self, threshold: float, device: str):
        self.torch = torch = _torch()
        self.t = float(threshold)
        self.device = device
        self.cpu = device == "cpu"
        self.dtype = _fast_dtype(torch, device)
        self.bits = self.cpu and self.dtype == torch.bfloat16
        self.tile = TILE_ROWS if self.cpu else TILE_ROWS_GPU
        self.lo, self.hi = self.t - MARGIN, self.t + MARGIN
        self.lo_bits = _bf16_ceil_bits(self.lo) if self.lo > 0 else None
        self.dense_tiles = 0

    def tensor(self, x: np.ndarray):
        """float32 rows -> a tensor on the device, in the matmul dtype."""
        torch = self.torch
        if self.bits and x.size <= _SMALL:
            return torch.from_numpy(_bf16_bits(x)).view(torch.bfloat16)
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device)
        return t if self.dtype == torch.float32 else t.to(self.dtype)

    def run(self, uf: "_UnionFind", x: np.ndarray, rows_x: np.ndarray, low_x: np.ndarray | None = None,
            y: np.ndarray | None = None, rows_y: np.ndarray | None = None, low_y: np.ndarray | None = None,
            tx=None) -> int:
        """Pairs of rows of x (i < j; or of x against y), joined in `uf`; returns how many."""
        same = y is None
        tx = self.tensor(x) if tx is None else tx
        ty = tx if same else self.tensor(y)
        y, rows_y, low_y = (x, rows_x, low_x) if same else (y, rows_y, low_y)
        tile, count = self.tile, 0
        for i0 in range(0, len(x), tile):
            i1 = min(i0 + tile, len(x))
            for j0 in range(i0 if same else 0, len(y), tile):
                j1 = min(j0 + tile, len(y))
                hit, sub = self._scores(tx[i0:i1] @ ty[j0:j1].T, same and i0 == j0)
                if len(hit):
                    count += self._pairs(uf, hit + i0, np.arange(j0, j1), sub, x, y, rows_x, rows_y, low_x, low_y,
                                         same and i0 == j0)
        return count

    def _scores(self, s, diag: bool) -> tuple[np.ndarray, np.ndarray]:
        """Rows of a similarity tile with a candidate (>= lo), and their similarities as float32 numpy."""
        if self.bits:
            b = s.view(self.torch.int16).numpy()
            if diag:
                np.fill_diagonal(b, _NEG2_BITS)
            hit = np.flatnonzero(b.max(axis=1) >= self.lo_bits) if self.lo_bits is not None else np.arange(len(b))
            return hit, (b[hit].astype(np.int32) << 16).view(np.float32)
        if self.cpu:
            a = s.numpy()
            if diag:
                np.fill_diagonal(a, -2.0)
            hit = np.flatnonzero(a.max(axis=1) >= self.lo)
            return hit, a[hit]
        if diag:
            s.fill_diagonal_(-2.0)
        hit = self.torch.nonzero(s.amax(dim=1) >= self.lo).ravel()
        return hit.cpu().numpy(), s[hit].float().cpu().numpy()

    def _pairs(self, uf, gi, cols, sub, x, y, rows_x, rows_y, low_x, low_y, diag) -> int:
        """Canonical pairs among candidate rows `gi` (of x) x columns `cols` (of y): verified, joined, counted."""
        keep = None  # canonical pairs: i < j on a diagonal tile, no earlier cluster shared
        if diag:
            keep = cols[None, :] > gi[:, None]
        if low_x is not None and low_x.shape[1]:
            la, lb = low_x[gi], low_y[cols]
            shared = np.zeros(sub.shape, bool)
            for p in range(la.shape[1]):
                valid = la[:, p, None] >= 0
                for q in range(lb.shape[1]):
                    shared |= (la[:, p, None] == lb[None, :, q]) & valid
            if shared.any():
                keep = ~shared if keep is None else keep & ~shared
        sure = sub >= self.hi
        band = (sub >= self.lo) & ~sure
        if keep is not None:
            sure &= keep
            band &= keep
        count = 0
        bi, bj = np.nonzero(band)  # the uncertain band: recomputed in float64
        if len(bi):
            a, b = gi[bi], cols[bj]
            ok = _dot64(x, y, a, b) >= self.t
            count += int(ok.sum())
            uf.add(rows_x[a[ok]], rows_y[b[ok]])
        n_sure = int(np.count_nonzero(sure))
        if n_sure:
            count += n_sure
            if n_sure > DENSE_LINKS and n_sure > 8 * sum(sure.shape) and _link_dense(uf, sure, rows_x[gi], rows_y[cols]):
                self.dense_tiles += 1
            else:
                si, sj = np.nonzero(sure)
                uf.add(rows_x[gi[si]], rows_y[cols[sj]])
        return count


def _link_dense(uf, sure: np.ndarray, rows_a: np.ndarray, rows_b: np.ndarray) -> bool:
    """Join the components of a dense bipartite tile by min-label propagation: one link per node."""
    r, c = sure.shape
    la, lb = np.arange(r, dtype=np.int32), np.arange(r, r + c, dtype=np.int32)
    big = np.int32(r + c)
    for _ in range(MAX_PROPAGATION):
        na = np.minimum(la, np.where(sure, lb[None, :], big).min(axis=1))
        nb = np.minimum(lb, np.where(sure, na[:, None], big).min(axis=0))
        if np.array_equal(na, la) and np.array_equal(nb, lb):
            break
        la, lb = na, nb
    else:
        return False  # not converged: the caller lists the pairs
    nodes = np.concatenate([rows_a, rows_b])
    lab = np.concatenate([la, lb])
    moved = lab != np.arange(r + c)
    uf.add(nodes[moved], nodes[lab[moved]])
    return True


def _chunk_plan(c: Collection, chunk_rows: int) -> list[tuple[int, int, int]]:
    """(shard, local start, local stop) of every chunk, in global row order (as iter_embeddings)."""
    plan = []
    for s, sh in enumerate(c.shards):
        for lo in range(0, sh.rows, chunk_rows):
            plan.append((s, lo, min(lo + chunk_rows, sh.rows)))
    return plan


def _progress(total: int, on, desc: str, unit: str = "rows"):
    """The bar for `progress` (:func:`workbench.io.progress.progress_bar`: a bool or a callable)."""
    return progress_bar(on, total, desc, unit=unit, unit_scale=True)


# -------------------------------------------------------------------------------------------------
# Methods
# -------------------------------------------------------------------------------------------------
def _exact(c: Collection, kind: str, threshold: float, chunk_rows: int, device: str, progress: bool) -> tuple[np.ndarray, int, dict]:
    uf = _UnionFind(len(c))
    search = _Search(threshold, device)
    plan = _chunk_plan(c, chunk_rows)

    def load(k):
        s, lo, hi = plan[k]
        data, _valid = normalize_rows(c.embeddings(s, kind)[lo:hi])  # invalid rows are zero: never >= t > 0
        return data, np.arange(int(c.offsets[s]) + lo, int(c.offsets[s]) + hi, dtype=np.int64)

    bar = _progress(len(plan) * (len(plan) + 1) // 2, progress, "exact dedup", "blocks")
    pairs = 0
    for a in range(len(plan)):
        xa, ra = load(a)
        ta = search.tensor(xa)
        for b in range(a, len(plan)):
            if b == a:
                pairs += search.run(uf, xa, ra, tx=ta)
            else:
                xb, rb = load(b)
                pairs += search.run(uf, xa, ra, None, xb, rb, None, tx=ta)
            if bar is not None:
                bar.update(1)
        del ta
    if bar is not None:
        bar.close()
    return uf.labels(), pairs, {"chunks": len(plan), "tile_rows": search.tile, "prefilter": str(search.dtype).replace("torch.", ""),
                                "dense_tiles": search.dense_tiles}
