"""workbench.scoring.kmeans.faiss_kmeans: the one faiss k-means; and the unit_rows helper."""
import numpy as np
import pytest

from workbench.io.kernels import unit_rows

faiss = pytest.importorskip("faiss")


def _data(n=600, d=8, seed=0):
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_same_as_faiss_kmeans_with_the_same_settings():
    from workbench.scoring.kmeans import faiss_kmeans

    x = _data()
    cent, own = faiss_kmeans(x, 6, niter=10, seed=3, max_points_per_centroid=256, assign=True)
    km = faiss.Kmeans(8, 6, niter=10, spherical=True, seed=3, verbose=False, min_points_per_centroid=1,
                      max_points_per_centroid=256)
    km.train(x)
    assert cent.dtype == np.float32 and cent.flags.c_contiguous
    np.testing.assert_array_equal(cent, km.centroids)
    np.testing.assert_array_equal(own, km.index.search(x, 1)[1][:, 0])
    assert np.allclose(np.linalg.norm(cent, axis=1), 1, atol=1e-5)  # spherical
    again, none = faiss_kmeans(x.astype(np.float64), 6, niter=10, seed=3)
    np.testing.assert_array_equal(again, cent)
    assert none is None


def test_unit_rows_numerics():
    x = np.array([[3.0, 4.0], [0.0, 0.0], [np.nan, 1.0]], np.float64)
    u = unit_rows(x)
    assert u.dtype == np.float32
    np.testing.assert_allclose(u[0], [0.6, 0.8])
    assert (u[1] == 0).all() and np.isnan(u[2]).all()
    assert unit_rows(x[:1], dtype=None).dtype == np.float64
    np.testing.assert_allclose(unit_rows(np.array([0.0, 2.0])), [0.0, 1.0])  # a vector: its own row
    ref = np.asarray(x[:2], np.float32)
    np.testing.assert_array_equal(u[:2], ref / np.maximum(np.linalg.norm(ref, axis=1, keepdims=True), 1e-12))
