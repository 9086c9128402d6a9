"""k-means centroids with faiss, one place for every stage (dedup's clusters, the map's clusters,
the map's placement lists).

    cent, own = faiss_kmeans(x, k, niter=20, seed=0, assign=True)
"""
from __future__ import annotations

import numpy as np


def faiss_kmeans(x: np.ndarray, k: int, *, niter: int, seed: int = 0, spherical: bool = True,
                 max_points_per_centroid: int = 256, min_points_per_centroid: int = 1, gpu: bool = False,
                 assign: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """(centroids (k, d) float32 C-contiguous, each row's nearest centroid id (int64) when `assign`
    else None) of ``faiss.Kmeans`` trained on `x` (made contiguous float32) with exactly these
    settings: the same arguments give the same centroids. `spherical`: centroids renormalised to
    unit length each iteration (for unit rows: cosine k-means); `gpu`: faiss-gpu (the caller checks
    it is there). faiss is imported here, on the call."""
    import faiss

    x = np.ascontiguousarray(x, dtype=np.float32)
    km = faiss.Kmeans(x.shape[1], k, niter=niter, spherical=spherical, seed=seed, verbose=False, gpu=bool(gpu),
                      min_points_per_centroid=min_points_per_centroid,
                      max_points_per_centroid=max_points_per_centroid)
    km.train(x)
    cent = np.ascontiguousarray(km.centroids, dtype=np.float32)
    own = km.index.search(x, 1)[1][:, 0] if assign else None
    del km
    return cent, own
