"""numba kernel of :mod:`workbench.map.placement` (imported lazily; compiled once, cached on disk)."""
import numba as nb
import numpy as np

from workbench.io.kernels_numba import _unit_row

_BLOCK = 16


@nb.njit(nogil=True, cache=True, inline="always")
def _key(b):
    """An int32 that orders bfloat16 bit patterns `b` (uint16) as their values."""
    x = np.int32(b)
    return x if x < 0x8000 else np.int32(0x7FFF) - x


@nb.njit(nogil=True, cache=True, fastmath=True, boundscheck=False)
def _block_max(row, a):
    m = _key(row[a])
    for c in range(a + 1, a + _BLOCK):
        m = max(m, _key(row[c]))
    return m


@nb.njit(nogil=True, cache=True, boundscheck=False)
def _offer(kv, ix, k, x, c):
    """Insert key x of column c into the row's best-first list (kv, ix) of k entries, whose last
    entry x beats; equal keys keep the earlier column first."""
    p = k - 1
    while p > 0 and kv[p - 1] < x:
        kv[p] = kv[p - 1]
        ix[p] = ix[p - 1]
        p -= 1
    kv[p] = x
    ix[p] = c


@nb.njit(nogil=True, cache=True, boundscheck=False)
def top_k_bf16(s, m, n, k, bits, cols):
    """For rows r < m of `s` (bfloat16 bit patterns, uint16): the k largest of s[r, :n] (k <= n),
    largest first (ties: the lower column first), as float32 bit patterns in bits[r] (uint32:
    view as float32) and their columns in cols[r]. Blocks of 16 whose largest value cannot enter
    the list are skipped whole, so a row costs little more than one vectorised pass."""
    kv = np.empty(k, np.int32)
    for r in range(m):
        ix = cols[r]
        row = s[r]
        for j in range(k):
            kv[j] = -0x8000
            ix[j] = -1
        lo = np.int32(-0x8000)
        full = n - n % _BLOCK
        for a in range(0, full, _BLOCK):
            if _block_max(row, a) <= lo:
                continue
            for c in range(a, a + _BLOCK):
                x = _key(row[c])
                if x > lo:
                    _offer(kv, ix, k, x, c)
                    lo = kv[k - 1]
        for c in range(full, n):
            x = _key(row[c])
            if x > lo:
                _offer(kv, ix, k, x, c)
                lo = kv[k - 1]
        for j in range(k):
            b = kv[j] if kv[j] >= 0 else np.int32(0x7FFF) - kv[j]
            bits[r, j] = np.uint32(b) << np.uint32(16)


@nb.njit(nogil=True, cache=True, boundscheck=False)
def argmax_bf16(s, m, out):
    """out[r] = the column of the largest of row r of `s` (bfloat16 bit patterns; the first on ties), r < m."""
    for r in range(m):
        row = s[r]
        best = _key(row[0])
        at = 0
        for c in range(1, s.shape[1]):
            x = _key(row[c])
            if x > best:
                best = x
                at = c
        out[r] = at


@nb.njit(nogil=True, cache=True, boundscheck=False, parallel=True)
def unit_bf16(u, out, valid):
    """Rows of fp16 bit patterns `u` (uint16) scaled to unit length, as bfloat16 bit patterns in
    `out` (round to nearest even, from the float32 unit row normalize_f16 gives); rows with NaN, inf
    or a zero norm become zeros, valid False (the rule of io.kernels.normalize_rows)."""
    d = u.shape[1]
    for i in nb.prange(u.shape[0]):
        bits = np.empty(d, np.uint32)
        f = bits.view(np.float32)
        ok = _unit_row(u, i, f, bits)
        valid[i] = ok
        if ok:
            for j in range(d):
                b = bits[j]
                out[i, j] = np.uint16((b + np.uint32(0x7FFF) + ((b >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16))
        else:
            for j in range(d):
                out[i, j] = 0
