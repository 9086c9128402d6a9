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

The work is done in :mod:`workbench.scoring.exactdedup` (the tiled pair search, union-find and the
exact method, with their constants) and :mod:`workbench.scoring.clusterdedup` (the clustered method,
with its constants); their names are re-exported here, and the constants are read where they live.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from workbench.errors import NoEmbeddingsError, WorkbenchError
from workbench.io.collection import KINDS, Collection
from workbench.models.device import resolve_device
from workbench.scoring.clusterdedup import (ASSIGN_SCORES, KMEANS_NITER, MAX_CLUSTERS,  # noqa: F401  (re-exported)
                                            MAX_SPLIT_DEPTH, SAMPLE_PER_CENTROID, SPLIT_FACTOR, SPLIT_MIN_ROWS,
                                            _clustered, _members)
from workbench.scoring.exactdedup import (DENSE_LINKS, MARGIN, MAX_PROPAGATION, TILE_ROWS,  # noqa: F401  (re-exported)
                                          TILE_ROWS_GPU, UNION_BUFFER, _exact, _fast_dtype, _Search, _UnionFind,
                                          components)

EXACT_MAX_ROWS = 50_000  # "auto" uses the exact method up to this many rows
METHODS = ("auto", "exact", "clustered")
_resolve_device = resolve_device  # the one rule (workbench.models.device); this name kept for callers



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
