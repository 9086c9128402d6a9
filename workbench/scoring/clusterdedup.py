"""The clustered near-duplicate method (SemDeDup-like): k-means, then all pairs inside each cluster.

Rows are assigned to their `probe` nearest centroids of a spherical k-means trained on a sample
(centred rows); each cluster's rows are gathered from the memory-mapped shards and searched with
:class:`~workbench.scoring.exactdedup._Search`; a cluster much larger than the mean is split the same
way, up to ``MAX_SPLIT_DEPTH`` levels; a pair is looked for only in the first cluster both rows
share. The contract (recall, cost, memory) is stated in :mod:`workbench.scoring.dedup`.
"""
from __future__ import annotations

import math
import time

import numpy as np

from workbench.io.collection import Collection
from workbench.io.kernels import normalize_rows
from workbench.scoring.exactdedup import _progress, _Search, _torch, _UnionFind
from workbench.scoring.kmeans import faiss_kmeans

MAX_CLUSTERS = 65_536
SAMPLE_PER_CENTROID = 40  # k-means training rows per centroid (faiss warns below 39)
KMEANS_NITER = 10
SPLIT_FACTOR = 4  # a cluster above SPLIT_FACTOR x the mean cluster size is split by k-means ...
SPLIT_MIN_ROWS = 4096  # ... when it is also larger than this
MAX_SPLIT_DEPTH = 2
ASSIGN_SCORES = 1 << 24  # row-centroid scores computed at once while assigning
_LEVEL = 1 << 40  # cluster ids of split level L are stored as id + L * _LEVEL


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
            cent, _ = faiss_kmeans(x, k, niter=KMEANS_NITER, seed=seed, gpu=bool(gpu),
                                   max_points_per_centroid=SAMPLE_PER_CENTROID * 4)
            return cent, "faiss-gpu" if gpu else "faiss"
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
