import numpy as np
import pytest

from workbench.io import kernels
def tricky(n=3000, dim=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim)).astype(np.float16)
    x[5, 3] = np.nan
    x[6, 0] = np.inf
    x[7, 9] = -np.inf
    x[8] = 0
    x[9] = np.float16(6e-8)  # subnormal fp16 values
    x[10] *= 100
    return x


def test_numba_is_used_here():
    assert kernels._numba() is not None, "numba ships with umap-learn: the fast path must be active"


def test_row_stats_numba_equals_numpy():
    x = tricky()
    fast, ref = kernels.row_stats(x), kernels._stats_numpy(x)
    np.testing.assert_array_equal(fast.finite, ref.finite)
    assert fast.finite[[5, 6, 7]].tolist() == [False] * 3 and fast.finite[8]
    np.testing.assert_allclose(fast.norms, ref.norms, rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(fast.total, ref.total, rtol=1e-9, atol=1e-9)
    exact = np.sqrt((x[9].astype(np.float64) ** 2).sum())
    assert fast.norms[9] == pytest.approx(exact, rel=1e-12) and exact > 0


def test_normalize_rows_numba_equals_numpy(monkeypatch):
    x = tricky()
    out, valid = kernels.normalize_rows(x)
    monkeypatch.setattr(kernels, "_numba", lambda: None)
    ref, ref_valid = kernels.normalize_rows(x)
    np.testing.assert_array_equal(valid, ref_valid)
    assert valid[[5, 6, 7, 8]].tolist() == [False] * 4 and valid[9]
    np.testing.assert_allclose(out, ref, atol=1e-7)
    assert np.all(out[~valid] == 0)
    np.testing.assert_allclose(np.linalg.norm(out[valid], axis=1), 1, atol=1e-6)


def test_float32_rows_and_empty():
    x = tricky().astype(np.float32)
    st = kernels.row_stats(x)
    assert st.finite.sum() == len(x) - 3
    out, valid = kernels.normalize_rows(np.empty((0, 4), np.float16))
    assert out.shape == (0, 4) and valid.shape == (0,)
