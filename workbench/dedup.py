"""Semantic near-duplicates: every pair of rows whose embeddings have cosine >= `threshold`, joined
into connected components (across shards), one member kept per component.

This is what clip-retrieval's result dedup does (an inner-product range search at 0.94, one kept
per connected component), done over a whole collection; the ``"clustered"`` method follows
SemDeDup (k-means first, then all pairs inside each cluster), with multi-assignment for recall.

Similarity and threshold
    The similarity of two rows is the dot product of their float32 unit rows (as
    :meth:`Collection.iter_embeddings` normalises them), evaluated in float64; a pair counts when
    ``sim >= threshold`` (inclusive). Fast matmuls (bfloat16 on CPUs that have it, float32 on GPUs)
    only *pre-filter*: entries above ``threshold + MARGIN`` are certain, entries within
    ``+-MARGIN`` of the threshold are recomputed in float64, the rest are certainly below (a
    bfloat16 or TF32 similarity is within ~0.01 of the true one; ``MARGIN`` = 0.02). So whether a
    pair counts never depends on the device, the BLAS or the tiling (the clustered method's cluster
    assignments do use the fast dtype). Invalid rows (NaN/inf/zero norm: ``chunk.valid`` False)
    are zero vectors, never >= a threshold > 0: never duplicates of anything.

``"exact"``
    Blockwise all pairs over streamed chunks: for chunk pairs ``a <= b`` (each read from the
    memory-mapped shards and normalised as ``iter_embeddings`` does), tiles of ``TILE_ROWS`` x
    ``TILE_ROWS`` similarities by torch matmul, ``i < j`` only. O(n^2) work; memory two chunks +
    one tile. For small collections (``"auto"`` picks it up to 50,000 rows) and as the reference
    the clustered method is measured against (:func:`recall`).

``"clustered"``
    1. spherical k-means (``faiss.Kmeans``; faiss-gpu on a CUDA device when installed; torch when
       faiss is missing) with `clusters` centroids (default ``sqrt(n)`` clamped to
       ``[1, 65536]``), trained on ``SAMPLE_PER_CENTROID`` rows per centroid drawn uniformly
       across all shards (``take_embeddings``). Rows are *centred* first (the sample mean
       subtracted, renormalised): CLIP rows share a large common direction, and without this the
       centroid nearest that direction is nearly every row's second choice (one cluster of 14% of
       the rows in the 1M-row benchmark; 0.3% with centring);
    2. one streamed pass assigns every valid row to its `probe` nearest centroids;
    3. cluster by cluster: gather its rows from the memory-mapped shards, then all pairs inside
       it. A cluster larger than ``SPLIT_FACTOR`` x the mean cluster size (and
       ``SPLIT_MIN_ROWS``) is split the same way (k-means on its own centred rows, each row in
       its `probe` nearest sub-clusters), up to ``MAX_SPLIT_DEPTH`` levels: the work follows the
       sum of squared cluster sizes, and k-means clusters are uneven.
    A pair is looked for only where it is *canonical*: in the first cluster both rows share (and,
    in a split cluster, the first sub-cluster both share), so each pair is found and counted at
    most once, and results do not depend on the order clusters are processed in. A true pair is
    missed when the two rows share no cluster (or no sub-cluster of their first shared one);
    :func:`recall` measures that (>= 0.95 at the defaults on clustered data). Work is
    O(n * (clusters + probe^2 * n / clusters) * dim) = O(n^1.5 * dim) at the default, not O(n^2).

Memory: embeddings are never loaded whole. Held at once: the result and the union-find forest
(8 + 8 bytes per row) and up to ``UNION_BUFFER`` buffered pairs; for "clustered" also the
assignments (4 * probe bytes per row), the rows grouped by cluster (4 * probe bytes per row below
2^31 rows, else 8 * probe), the k-means sample (``SAMPLE_PER_CENTROID * clusters`` rows of
float32) and **one cluster's rows** as float32 (4 * dim bytes per row, plus a bfloat16 copy):
peak memory follows the largest cluster, reported as ``params["largest_cluster"]`` (with
``params["split_at"]``: clusters above it are split, but still gathered whole once). At 5B rows and
65,536 clusters the mean cluster is ~150k rows (~0.3 GB at 512-d). Gathering a cluster reads its
rows where they lie: random reads, fast from the page cache or NVMe, slow from disks.

Dense groups (thousands of copies of one image, common in LAION) have O(g^2) pairs: they are
counted in bulk and joined through per-tile label propagation (at most one link per row per tile),
never listed pair by pair; the matmul work stays O(g^2 * dim).
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from .collection import KINDS, Collection
from .errors import NoEmbeddingsError, WorkbenchError
from .kernels import normalize_rows

EXACT_MAX_ROWS = 50_000  # "auto" uses the exact method up to this many rows
MARGIN = 0.02  # prefilter band around the threshold re-checked in float64 (bf16/TF32 error <= ~0.01)
TILE_ROWS = 1024  # rows per side of one similarity tile on the CPU (small: a diagonal tile computes both halves)
TILE_ROWS_GPU = 16384  # ... on a GPU (1 GiB as float32)
MAX_CLUSTERS = 65_536
SAMPLE_PER_CENTROID = 40  # k-means training rows per centroid (faiss warns below 39)
KMEANS_NITER = 10
SPLIT_FACTOR = 4  # a cluster above SPLIT_FACTOR x the mean cluster size is split by k-means ...
SPLIT_MIN_ROWS = 4096  # ... when it is also larger than this
MAX_SPLIT_DEPTH = 2
ASSIGN_SCORES = 1 << 24  # row-centroid scores computed at once while assigning
UNION_BUFFER = 1 << 23  # pairs buffered before they are folded into the union-find forest
DENSE_LINKS = 1 << 16  # a tile with more certain pairs than this (and 8 per row) is linked by label propagation
MAX_PROPAGATION = 16
METHODS = ("auto", "exact", "clustered")
_LEVEL = 1 << 40  # cluster ids of split level L are stored as id + L * _LEVEL


@dataclass
class DedupResult:
    """Near-duplicate components of a collection, one entry per row in global row order."""

    representative: np.ndarray  # int64 (n,): the smallest row id of the row's component
    threshold: float
    method: str  # "exact" or "clustered"
    pairs: int  # above-threshold pairs found (each unordered pair once)
    params: dict = field(default_factory=dict)  # what reproduces it: kind, clusters, probe, seed, ...

    def __len__(self) -> int:
        return len(self.representative)

    @property
    def keep(self) -> np.ndarray:
        """bool (n,): the row is its component's representative (one kept per component, the first)."""
        return self.representative == np.arange(len(self.representative), dtype=np.int64)

    @property
    def duplicates(self) -> int:
        """Rows that duplicate an earlier row (what dropping them removes)."""
        return int(len(self.representative) - np.count_nonzero(self.keep))

    @property
    def groups(self) -> int:
        """Components with more than one row."""
        return int(np.unique(self.representative[~self.keep]).size)

    def __repr__(self) -> str:
        return (f"<DedupResult {self.method} >= {self.threshold}: {len(self):,} rows, {self.duplicates:,} duplicates "
                f"in {self.groups:,} groups, {self.pairs:,} pairs>")


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


def _resolve_device(device: str) -> str:
    torch = _torch()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not isinstance(device, str) or not (device == "cpu" or device == "cuda" or device.startswith("cuda:")):
        raise WorkbenchError(f"device must be 'auto', 'cpu' or 'cuda[:N]', not {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise WorkbenchError(f"device {device!r} asked for, but torch sees no CUDA device: use device='auto' or 'cpu'")
    return device


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


def _progress(total: int, on: bool, desc: str, unit: str = "rows"):
    if not on:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover
        return None
    return tqdm(total=total, unit=unit, unit_scale=True, desc=desc, file=sys.stderr)


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


class _Reader:
    """The shards' embeddings, memory-mapped once for the whole run.

    ``Collection.take_embeddings`` maps a shard again on every call, so every row it gathers costs
    a page fault; gathering clusters (rows scattered over all shards) through one mapping per
    shard is ~3x faster. Rows are normalised exactly as ``iter_embeddings`` / ``take_embeddings`` do.
    """

    def __init__(self, c: Collection, kind: str):
        self.offsets = c.offsets
        self.arrays = [c.embeddings(i, kind) for i in range(len(c.shards))]

    def chunks(self, chunk_rows: int):
        """(start, float32 unit rows, valid) in global row order, as ``iter_embeddings``."""
        for i, arr in enumerate(self.arrays):
            for lo in range(0, arr.shape[0], chunk_rows):
                data, valid = normalize_rows(arr[lo : lo + chunk_rows])
                yield int(self.offsets[i]) + lo, data, valid

    def take(self, rows: np.ndarray) -> np.ndarray:
        """float32 unit rows of ascending global row ids."""
        cut = np.searchsorted(rows, self.offsets)
        parts = []
        for i in np.flatnonzero(np.diff(cut)):
            local = rows[cut[i] : cut[i + 1]] - self.offsets[i]
            parts.append(normalize_rows(self.arrays[i][local])[0])
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _sample_rows(c: Collection, kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """`size` rows drawn uniformly without replacement from all shards, as float32 unit rows (valid only)."""
    n = len(c)
    rows = np.sort(rng.choice(n, size=size, replace=False)) if size < n else np.arange(n, dtype=np.int64)
    x = c.take_embeddings(rows, kind)
    return np.ascontiguousarray(x[np.einsum("ij,ij->i", x, x) > 0.5])  # invalid rows come back zeroed


def _kmeans(x: np.ndarray, k: int, seed: int, device: str) -> tuple[np.ndarray, str]:
    """Spherical k-means centroids (k, dim): faiss (faiss-gpu on a cuda device when present), else torch."""
    try:
        import faiss
    except ImportError:
        faiss = None
    if faiss is not None:
        gpu = device.startswith("cuda") and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
        try:
            km = faiss.Kmeans(x.shape[1], k, niter=KMEANS_NITER, spherical=True, seed=seed, gpu=bool(gpu),
                              min_points_per_centroid=1, max_points_per_centroid=SAMPLE_PER_CENTROID * 4)
            km.train(np.ascontiguousarray(x, dtype=np.float32))
            return np.ascontiguousarray(km.centroids, dtype=np.float32), "faiss-gpu" if gpu else "faiss"
        except RuntimeError:  # pragma: no cover - a faiss-gpu failure: the CPU path below
            if not gpu:
                raise
    # torch fallback (no faiss): Lloyd iterations, centroids renormalised each time
    torch = _torch()
    g = torch.Generator().manual_seed(seed)
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device)
    cent = xt[torch.randperm(len(x), generator=g)[:k].to(device)].clone()
    for _ in range(KMEANS_NITER):
        lab = (xt @ cent.T).argmax(dim=1)
        acc = torch.zeros_like(cent).index_add_(0, lab, xt)
        empty = acc.norm(dim=1) == 0
        acc[empty] = cent[empty]
        cent = torch.nn.functional.normalize(acc, dim=1)
    return cent.cpu().numpy(), "torch"


def _centred(x: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Unit rows of ``x - mean``: CLIP rows share a large common component (the cone); without
    removing it, the centroid nearest the mean is every row's second choice, one giant cluster."""
    x = x - mean
    norm = np.sqrt(np.einsum("ij,ij->i", x, x))
    return x / np.maximum(norm, 1e-12)[:, None]


class _Quantizer:
    """k-means on mean-centred unit rows; `nearest` gives each row's `probe` nearest centroids."""

    def __init__(self, search: _Search, sample: np.ndarray, k: int, seed: int, device: str):
        self.search = search
        self.mean = sample.mean(axis=0, dtype=np.float64).astype(np.float32)
        cent, self.backend = _kmeans(_centred(sample, self.mean), k, seed, device)
        self.k = len(cent)
        self.cent = search.tensor(cent)

    def nearest(self, x: np.ndarray, probe: int) -> np.ndarray:
        """int32 (len(x), probe), in blocks of at most ASSIGN_SCORES scores."""
        torch = self.search.torch
        sub = max(1, ASSIGN_SCORES // self.k)
        parts = [torch.topk(self.search.tensor(_centred(x[s : s + sub], self.mean)) @ self.cent.T, probe, dim=1)
                 .indices.to(torch.int32).cpu().numpy() for s in range(0, len(x), sub)]
        return np.concatenate(parts) if parts else np.zeros((0, probe), np.int32)


def _members(assign: np.ndarray, k: int, chunk_rows: int = 1 << 22) -> tuple[np.ndarray, np.ndarray]:
    """Counting sort of an assignment (m, probe): (row ids grouped by cluster, ascending inside each;
    bounds (k+1,)). Row ids are int32 below 2^31 rows; temporaries are per block of `chunk_rows`."""
    m, probe = assign.shape
    counts = np.zeros(k, np.int64)
    for s in range(0, m, chunk_rows):
        a = assign[s : s + chunk_rows].ravel()
        counts += np.bincount(a[a >= 0], minlength=k)
    bounds = np.concatenate([[0], np.cumsum(counts)])
    out = np.empty(int(bounds[-1]), np.int32 if m < 2**31 else np.int64)
    fill = bounds[:-1].copy()
    for s in range(0, m, chunk_rows):
        a = assign[s : s + chunk_rows].ravel()
        pos = np.flatnonzero(a >= 0)
        key = a[pos]
        order = np.argsort(key, kind="stable")  # stable: rows stay ascending inside a cluster
        key, pos = key[order], pos[order]
        cnt = np.bincount(key, minlength=k)
        rank = np.arange(len(key)) - (np.cumsum(cnt) - cnt)[key]
        out[fill[key] + rank] = s + pos // probe
        fill += cnt
    return out, bounds


def _lower(assign_rows: np.ndarray, cl: int, level: int) -> np.ndarray:
    """The clusters before `cl` each row belongs to (int64, -1 = none), tagged with the split level."""
    a = assign_rows.astype(np.int64)
    return np.where((a < cl) & (a >= 0), a + level * _LEVEL, -1)


class _Clustered:
    """The pair search of one cluster at a time, splitting the large ones."""

    def __init__(self, search: _Search, uf: "_UnionFind", probe: int, seed: int, device: str, target: float,
                 split_at: int):
        self.search, self.uf = search, uf
        self.probe, self.seed, self.device = probe, seed, device
        self.target, self.split_at = target, split_at  # the mean cluster size; split above split_at
        self.splits = 0

    def cluster(self, x: np.ndarray, rows: np.ndarray, low: np.ndarray, depth: int) -> int:
        """All canonical pairs among `rows` (x: their unit rows), splitting the group when it is large."""
        m = len(x)
        if m < 2:
            return 0
        if m <= self.split_at or depth >= MAX_SPLIT_DEPTH:
            return self.search.run(self.uf, x, rows, low)
        k2 = int(min(max(2, math.ceil(self.probe * m / self.target)), m // 2))  # sub-clusters of about the mean size
        rng = np.random.default_rng([self.seed, depth, int(rows[0]), m])
        sample = x[np.sort(rng.choice(m, size=min(m, k2 * SAMPLE_PER_CENTROID), replace=False))]
        quant = _Quantizer(self.search, sample, k2, self.seed, self.device)
        del sample
        k2 = quant.k
        probe = min(self.probe, k2)
        sub_assign = quant.nearest(x, probe)
        pos, bounds = _members(sub_assign, k2)
        if np.diff(bounds).max() >= m:  # k-means could not split it (e.g. copies of one image)
            return self.search.run(self.uf, x, rows, low)
        self.splits += 1
        count = 0
        for s in range(k2):
            idx = pos[bounds[s] : bounds[s + 1]]
            if len(idx) >= 2:
                sub_low = np.hstack([low[idx], _lower(sub_assign[idx], s, depth + 1)])
                count += self.cluster(x[idx], rows[idx], sub_low, depth + 1)
        return count


def _clustered(c: Collection, kind: str, threshold: float, chunk_rows: int, clusters: int | None, probe: int,
               seed: int, device: str, progress: bool) -> tuple[np.ndarray, int, dict]:
    n = len(c)
    k = clusters if clusters is not None else int(min(max(round(math.sqrt(n)), 1), MAX_CLUSTERS))
    k = min(k, n)
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    sample = _sample_rows(c, kind, min(n, k * SAMPLE_PER_CENTROID), rng)
    k = min(k, len(sample))
    info: dict = {"clusters": k, "sample": int(len(sample)), "niter": KMEANS_NITER}
    if k == 0:  # no valid row at all
        return np.arange(n, dtype=np.int64), 0, info | {"probe": 0, "largest_cluster": 0}
    probe = min(probe, k)
    search = _Search(threshold, device)
    quant = _Quantizer(search, sample, k, seed, device)
    del sample
    info.update(kmeans=quant.backend, probe=probe, centred=True, seconds_kmeans=round(time.perf_counter() - t0, 3))

    # 2. each valid row's `probe` nearest centroids, in one streamed pass
    t0 = time.perf_counter()
    assign = np.full((n, probe), -1, dtype=np.int32)
    bar = _progress(n, progress, "dedup: assign")
    reader = _Reader(c, kind)
    for start, data, valid in reader.chunks(chunk_rows):
        top = quant.nearest(data, probe)
        top[~valid] = -1
        assign[start : start + len(top)] = top
        if bar is not None:
            bar.update(len(top))
    if bar is not None:
        bar.close()
    del quant
    info["seconds_assign"] = round(time.perf_counter() - t0, 3)

    # 3. cluster by cluster: its rows (ascending), all canonical pairs inside it
    t0 = time.perf_counter()
    rows_sorted, bounds = _members(assign, k)
    sizes = np.diff(bounds)
    valid = int(np.count_nonzero(assign[:, 0] >= 0))
    target = max(probe * valid / k, 1.0)  # the mean cluster size
    split_at = max(SPLIT_MIN_ROWS, math.ceil(SPLIT_FACTOR * target))
    info.update(largest_cluster=int(sizes.max()), split_at=split_at, valid_rows=valid)
    uf = _UnionFind(n)
    work = _Clustered(search, uf, probe, seed, device, target, split_at)
    pairs = 0
    bar = _progress(int(sizes.sum()), progress, "dedup: clusters")
    for cl in range(k):
        rows = rows_sorted[bounds[cl] : bounds[cl + 1]]
        if len(rows) >= 2:
            pairs += work.cluster(reader.take(rows), rows, _lower(assign[rows], cl, 0), 0)
        if bar is not None:
            bar.update(len(rows))
    if bar is not None:
        bar.close()
    info.update(split_clusters=work.splits, dense_tiles=search.dense_tiles, tile_rows=search.tile,
                prefilter=str(search.dtype).replace("torch.", ""), seconds_pairs=round(time.perf_counter() - t0, 3))
    return uf.labels(), pairs, info


# -------------------------------------------------------------------------------------------------
# Public entry points
# -------------------------------------------------------------------------------------------------
def _check(c: Collection, threshold, kind: str, method: str, chunk_rows, clusters, probe, seed) -> float:
    try:
        if isinstance(threshold, bool):
            raise TypeError
        t = float(threshold)
    except (TypeError, ValueError):
        raise WorkbenchError(f"threshold must be a number in (0, 1], not {threshold!r}") from None
    if not (0.0 < t <= 1.0):  # also rejects NaN
        raise WorkbenchError(f"threshold must be in (0, 1] (a cosine similarity), got {threshold!r}")
    if kind not in KINDS:
        raise WorkbenchError(f"kind must be one of {KINDS}, not {kind!r}")
    if method not in METHODS:
        raise WorkbenchError(f"method must be one of {METHODS}, not {method!r}")
    for name, v, low in (("chunk_rows", chunk_rows, 1), ("probe", probe, 1), ("seed", seed, 0)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
            raise WorkbenchError(f"{name} must be an integer >= {low}, got {v!r}")
    if clusters is not None and (isinstance(clusters, bool) or not isinstance(clusters, (int, np.integer)) or clusters < 1):
        raise WorkbenchError(f"clusters must be an integer >= 1 (or None for sqrt(rows)), got {clusters!r}")
    missing = [s.name for s in c.shards if (s.image if kind == "image" else s.text) is None]
    if missing:
        if len(missing) == len(c.shards):
            raise NoEmbeddingsError(c._no_embeddings(kind), c.path)
        raise NoEmbeddingsError(f"{len(missing)} of {len(c.shards)} shards have no {kind} embeddings "
                                f"(first: {missing[0]})", c.path)
    return t


def semantic_duplicates(
    collection: Collection,
    threshold: float = 0.94,
    kind: str = "image",
    method: str = "auto",
    chunk_rows: int = 65536,
    clusters: int | None = None,
    probe: int = 2,
    seed: int = 0,
    device: str = "auto",
    progress: bool = False,
) -> DedupResult:
    """Near-duplicate components of `collection`: rows joined by cosine >= `threshold`, across shards.

    `method`: ``"exact"`` (all pairs, O(n^2)), ``"clustered"`` (k-means with `clusters` centroids,
    each row in its `probe` nearest clusters, all pairs inside each cluster) or ``"auto"`` (exact up
    to 50,000 rows). `seed` fixes the k-means sample and initialisation. `device`: ``"auto"`` (CUDA
    when torch sees one, else CPU), ``"cpu"``, ``"cuda[:N]"``. Embeddings are streamed, never
    loaded whole; see the module docstring for memory and cost.

    ``result.keep`` marks one row per component (its smallest row id); ``~result.keep`` the rows
    to drop. ``result.params`` holds everything needed to rerun it, and the phase timings.
    Identical rows score 1 +- 1e-7 (float32 unit rows), so ``threshold=1.0`` can miss exact
    copies: use 0.9999 for those.
    """
    t = _check(collection, threshold, kind, method, chunk_rows, clusters, probe, seed)
    dev = _resolve_device(device)
    n = len(collection)
    chosen = ("exact" if n <= EXACT_MAX_ROWS else "clustered") if method == "auto" else method
    params = {"kind": kind, "method_asked": method, "chunk_rows": int(chunk_rows), "device": dev, "rows": n,
              "dim": collection.dim, "fingerprint": collection.fingerprint}
    t0 = time.perf_counter()
    if n == 0:
        rep, pairs, info = np.zeros(0, np.int64), 0, {}
    elif chosen == "exact":
        rep, pairs, info = _exact(collection, kind, t, int(chunk_rows), dev, progress)
    else:
        rep, pairs, info = _clustered(collection, kind, t, int(chunk_rows), clusters, int(probe), int(seed), dev, progress)
        info["seed"] = int(seed)
    params.update(info)
    params["seconds"] = round(time.perf_counter() - t0, 3)
    return DedupResult(representative=rep, threshold=t, method=chosen, pairs=int(pairs), params=params)


def recall(result: DedupResult, exact: DedupResult) -> float:
    """Share of the rows `exact` marks as duplicates (non-representatives) that `result` marks too.

    1.0 when `exact` found no duplicates.
    """
    if len(result.representative) != len(exact.representative):
        raise WorkbenchError(f"the results cover different row counts ({len(result.representative):,} vs "
                             f"{len(exact.representative):,})")
    dup = ~exact.keep
    if not dup.any():
        return 1.0
    return float(np.count_nonzero(~result.keep[dup]) / np.count_nonzero(dup))
