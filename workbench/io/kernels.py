"""Fused row kernels over stored embeddings: norms, finiteness, centroid, normalisation.

numpy's float16 -> float32 cast runs at about 0.9 GB/s on CPUs where it does not use the hardware
conversion, far below the disk. With numba (a dependency of umap-learn) one fused pass reads the
fp16 bits, converts them exactly, and accumulates in float64; it is compiled once and cached on
disk. Without numba the numpy path gives the same results, slower.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

SUB_ROWS = 4096
_kernels = None
_tried = False


@dataclass
class RowStats:
    norms: np.ndarray  # float64 (n,), NaN where a row is not finite
    finite: np.ndarray  # bool (n,)
    total: np.ndarray  # float64 (dim,): sum of the unit rows (finite, non-zero rows only)


def _numba():
    """The compiled kernels, or None when numba is missing or disabled (WORKBENCH_NO_NUMBA=1)."""
    global _kernels, _tried
    if _tried:
        return _kernels
    _tried = True
    if os.environ.get("WORKBENCH_NO_NUMBA"):
        return None
    try:
        from workbench.io import kernels_numba as k
    except ImportError:
        return None
    _kernels = (k.stats_f16, k.normalize_f16, k.live_counts, k.set_bit_bounds)
    return _kernels


def _numba_tiles():
    """The slider-tile kernels (:mod:`workbench.curation.tiles`), or None without numba."""
    if _numba() is None:
        return None
    from workbench.io import kernels_numba as k

    return k.tile_count, k.tile_scatter, k.tile_exact, k.pattern_presence


def fused_dots_available(arr) -> bool:
    """Whether :func:`fused_dots` runs on these stored embeddings (fp16, with numba)."""
    return np.dtype(arr.dtype) == np.float16 and arr.ndim == 2 and _numba() is not None


def fused_dots(raw: np.ndarray, q: np.ndarray, want_norms: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """One parallel pass over fp16 rows: ``(raw @ q.T`` as float32 ``(n, k)`` from the exact fp16
    values, the row norms (float32, NaN where a row holds inf or NaN) when `want_norms`, else None)."""
    from workbench.io import kernels_numba as k

    n = raw.shape[0]
    dots = np.empty((n, len(q)), np.float32)
    norms = np.empty(n if want_norms else 0, np.float32)
    if n:
        k.dots_f16(np.ascontiguousarray(raw).view(np.uint16), np.ascontiguousarray(q, np.float32), dots, norms,
                   want_norms)
    return dots, (norms if want_norms else None)


def _stats_numpy(arr: np.ndarray) -> RowStats:
    n, dim = arr.shape
    buf = np.empty((min(SUB_ROWS, max(n, 1)), dim), dtype=np.float64)
    norms_all = np.empty(n, dtype=np.float64)
    finite_all = np.ones(n, dtype=bool)
    total = np.zeros(dim, dtype=np.float64)
    for start in range(0, n, SUB_ROWS):
        block = arr[start : start + SUB_ROWS]
        x = buf[: len(block)]
        np.copyto(x, block)  # fp16 -> float64 is exact, and numpy's fastest fp16 cast
        with np.errstate(invalid="ignore", over="ignore"):
            norms = np.sqrt(np.einsum("ij,ij->i", x, x))
        finite = np.isfinite(norms)  # a row holding NaN/inf has a NaN/inf norm...
        if not finite.all():
            finite = np.isfinite(x).all(axis=1)  # ...the exact per-row check only where one is off
            norms[~finite] = np.nan
        good = finite & (norms > 1e-12)
        w = np.zeros(len(x))
        np.divide(1.0, norms, out=w, where=good)
        if not good.all():
            x[~good] = 0.0  # NaN * 0 would poison the sum
        total += np.einsum("i,ij->j", w, x)  # einsum, not BLAS: no thread oversubscription
        norms_all[start : start + len(x)] = norms
        finite_all[start : start + len(x)] = finite
    return RowStats(norms_all, finite_all, total)


def row_stats(arr: np.ndarray) -> RowStats:
    """Norms, finiteness and the sum of unit rows of a (n, dim) array, in one pass."""
    k = _numba()
    if k is not None and arr.dtype == np.float16 and arr.shape[0]:
        n, dim = arr.shape
        norms, finite, total = np.empty(n), np.empty(n, dtype=bool), np.zeros(dim)
        k[0](np.ascontiguousarray(arr).view(np.ndarray).view(np.uint16), total, norms, finite)
        return RowStats(norms, finite, total)
    return _stats_numpy(arr)


def unit_rows(x, dtype=np.float32, floor: float = 1e-12) -> np.ndarray:
    """`x` (a vector or rows) as unit L2 rows along the last axis: ``x / max(norm, floor)``, computed
    in `dtype` (float32 by default; None keeps `x`'s dtype). A zero row stays zero; a NaN or inf row
    gives NaN. For a validity mask and float64 accumulation over stored shards, see
    :func:`normalize_rows`."""
    x = np.asarray(x) if dtype is None else np.asarray(x, dtype=dtype)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(n, floor)


def normalize_rows(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Float32 copy with unit rows; NaN/inf/zero-norm rows become zeros and are marked invalid."""
    n, dim = block.shape
    out = np.empty((n, dim), dtype=np.float32)
    valid = np.empty(n, dtype=bool)
    k = _numba()
    if k is not None and block.dtype == np.float16 and n:
        k[1](np.ascontiguousarray(block).view(np.ndarray).view(np.uint16), out, valid)
        return out, valid
    buf = np.empty((min(SUB_ROWS, max(n, 1)), dim), dtype=np.float64)
    for s in range(0, n, SUB_ROWS):
        x = buf[: len(block[s : s + SUB_ROWS])]
        np.copyto(x, block[s : s + SUB_ROWS])
        with np.errstate(invalid="ignore", over="ignore"):
            norms = np.sqrt(np.einsum("ij,ij->i", x, x))
        ok = np.isfinite(norms) & (norms > 1e-12)
        inv = np.zeros(len(x))
        np.divide(1.0, norms, out=inv, where=ok)
        if not ok.all():
            x[~ok] = 0.0
        np.multiply(x, inv[:, None], out=out[s : s + len(x)])
        valid[s : s + len(x)] = ok
    return out, valid


MAX_LIVE_RULES = 16


def within(v: np.ndarray, lo, lo_incl: bool, hi, hi_incl: bool) -> np.ndarray:
    """Values within the bounds (None: no bound; NaN fails): the test :func:`set_bit_bounds` and
    the live counts, slider tiles and map raster apply (their numba kernels share
    ``kernels_numba.within``)."""
    with np.errstate(invalid="ignore"):
        ok = v == v
        if lo is not None:
            ok &= (v >= lo) if lo_incl else (v > lo)
        if hi is not None:
            ok &= (v <= hi) if hi_incl else (v < hi)
    return ok


def set_bit_bounds(packed: np.ndarray, v: np.ndarray, bit: int, lo: float | None, lo_incl: bool,
                   hi: float | None, hi_incl: bool) -> None:
    """Bit `bit` of each row's fail pattern := the row's value fails the bounds (NaN fails)."""
    kern = _numba()
    nan = float("nan")
    if kern is not None and len(v):
        kern[3](packed, v, bit, nan if lo is None else lo, lo_incl, nan if hi is None else hi, hi_incl)
        return
    ok = within(v, lo, lo_incl, hi, hi_incl)
    mask = np.uint16(1 << bit)
    packed &= ~mask
    packed |= (~ok).astype(np.uint16) << np.uint16(bit)


def live_counts(packed: np.ndarray, k: int, bins: np.ndarray | None = None, skip: int = -1, n_bins: int = 64):
    """Counts from per-row fail patterns (uint16, bit i = rule i removes the row; k <= 16 rules):
    (removed alone, removed in order, histogram of all rows, histogram of rows no rule but `skip`
    removes). ``bins`` holds each row's histogram bin (uint8; >= n_bins = no value)."""
    n = len(packed)
    if bins is None:
        bins = np.full(n, 255, np.uint8)
    others = np.uint16(((1 << k) - 1) & ~(1 << skip if skip >= 0 else 0))
    h_all, h_kept = np.zeros(n_bins, np.int64), np.zeros(n_bins, np.int64)
    kern = _numba()
    if kern is not None and n:
        by_value = np.zeros(1 << 16, np.int64)
        kern[2](packed, bins, others, by_value, h_all, h_kept)
    else:
        by_value = np.bincount(packed, minlength=1 << 16)
        ok = bins < n_bins
        h_all[:] = np.bincount(bins[ok], minlength=n_bins)[:n_bins]
        h_kept[:] = np.bincount(bins[ok & ((packed & others) == 0)], minlength=n_bins)[:n_bins]
    values = np.nonzero(by_value)[0]
    counts = by_value[values]
    alone, seq = pattern_counts(values, counts, k)
    return alone, seq, h_all, h_kept


def pattern_counts(values: np.ndarray, counts: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(removed alone, removed in order) per rule from row counts by fail pattern: `values` the
    patterns (bit i = rule i removes the row), `counts` how many rows carry each."""
    values = np.asarray(values, np.int64)
    alone, seq = np.zeros(k, np.int64), np.zeros(k, np.int64)
    for i in range(k):
        has = (values >> i) & 1 == 1
        alone[i] = counts[has].sum()
        seq[i] = counts[has & ((values & ((1 << i) - 1)) == 0)].sum()
    return alone, seq
