"""numba kernels of :mod:`workbench.map.placement` (imported lazily; compiled once, cached on disk).

Float values are handled as their bit patterns (int16 for bfloat16, int32 for float32), mapped by
:func:`_key` to integer keys that order as the values do (-0 just below +0), so comparisons
vectorise as plain integer ones.
"""
import numba as nb
import numpy as np

from workbench.io.kernels_numba import _unit_row

_STRIPES = 8  # top-k: a row's columns as 8 stripes; "groups" are the columns at one offset in each


@nb.njit(nogil=True, cache=True, inline="always")
def _key(b, top):
    """An integer that orders the float bit patterns `b` (int16 for bfloat16, top=15; int32 for
    float32, top=31) as their values, -0 just below +0 (its own inverse)."""
    return b ^ ((b >> top) & ((1 << top) - 1))


@nb.njit(nogil=True, cache=True, boundscheck=False)
def top_k(s, m, n, k, bits, cols):
    """For rows r < m of `s` (bit patterns: int16 of bfloat16 values or int32 of float32 ones;
    fewer than 2**20 columns): the k largest of s[r, :n] (k <= n), largest first (ties: the
    lower column first), as float32 bit patterns in bits[r] (uint32: view as float32) and their
    columns in cols[r].

    Exact, with few unpredictable branches (bfloat16 similarities tie often, which defeats a
    running top-k list): the row's W columns are split into 8 stripes of G = W / 8 and group g
    is column g of every stripe. The k-th largest group maximum t (a binary search over the
    key range, counting vectorised) is a lower bound of the k-th largest value, as k groups each
    hold a value >= t; the values >= t of the groups that reach t (k and their ties) are
    gathered without branching as (key, column) in one int64, sorted, and the first k kept."""
    w = s.shape[1]
    top = 8 * s.itemsize - 1
    low = -(1 << top)  # the padding's key: below every value
    stripes = _STRIPES if (w % _STRIPES == 0 and w // _STRIPES >= k) else 1
    g_n = w // stripes
    keys = np.empty_like(s[0])
    gm = np.empty_like(s[0, :g_n])
    grp = np.empty(g_n, np.int64)
    cand = np.empty(w, np.int64)
    for r in range(m):
        row = s[r]
        if top == 15:  # the same key, typed narrow: it vectorises 32 lanes wide
            for c in range(w):
                keys[c] = row[c] ^ ((row[c] >> np.int16(15)) & np.int16(0x7FFF))
        else:
            for c in range(w):
                keys[c] = _key(row[c], top)
        for c in range(n, w):
            keys[c] = low
        for g in range(g_n):
            gm[g] = keys[g]
        for i in range(1, stripes):
            base = i * g_n
            for g in range(g_n):
                gm[g] = max(gm[g], keys[base + g])
        lo = np.int64(-low)
        hi = np.int64(low)
        for g in range(g_n):
            lo = min(lo, np.int64(gm[g]))
            hi = max(hi, np.int64(gm[g]))
        while lo < hi:  # t: the largest key that k group maxima reach (g_n >= k reach lo)
            mid = (lo + hi + 1) >> 1
            count = 0
            for g in range(g_n):
                count += np.int64(gm[g]) >= mid
            if count >= k:
                lo = mid
            else:
                hi = mid - 1
        t = lo
        ng = 0
        for g in range(g_n):
            grp[ng] = g
            ng += np.int64(gm[g]) >= t
        nc = 0
        for q in range(ng):
            g = grp[q]
            for i in range(stripes):
                c = i * g_n + g
                x = np.int64(keys[c])
                cand[nc] = (x << 20) | (0xFFFFF - c)  # larger: a larger value, or a lower column
                nc += x >= t
        for q in range(1, nc):  # descending; nc is k plus ties
            v = cand[q]
            p = q
            while p > 0 and cand[p - 1] < v:
                cand[p] = cand[p - 1]
                p -= 1
            cand[p] = v
        for j in range(k):
            v = cand[j]
            cols[r, j] = 0xFFFFF - (v & 0xFFFFF)
            b = _key(v >> 20, top) & ((1 << (top + 1)) - 1)
            bits[r, j] = np.uint32(b << (31 - top))


@nb.njit(nogil=True, cache=True, boundscheck=False)
def argmax(s, m, n, out):
    """out[r] = the column of the largest of s[r, :n] (bit patterns as for :func:`top_k`; the first
    on ties), r < m: one vectorised pass for the maximum, then the first column that holds it."""
    top = 8 * s.itemsize - 1
    for r in range(m):
        row = s[r]
        best = _key(row[0], top)
        for c in range(1, n):
            best = max(best, _key(row[c], top))
        at = 0
        while _key(row[at], top) != best:
            at += 1
        out[r] = at


@nb.njit(nogil=True, cache=True, boundscheck=False)
def unit_bf16(u, out, valid):
    """Rows of fp16 bit patterns `u` (uint16) scaled to unit length, as bfloat16 bit patterns in
    `out` (round to nearest even, from the float32 unit row normalize_f16 gives); rows with NaN, inf
    or a zero norm become zeros, valid False (the rule of io.kernels.normalize_rows). One thread:
    a placement worker has one (a parallel loop measured 1.6x slower on one thread)."""
    d = u.shape[1]
    bits = np.empty(d, np.uint32)
    f = bits.view(np.float32)
    for i in range(u.shape[0]):
        ok = _unit_row(u, i, f, bits)
        valid[i] = ok
        keep = np.uint32(0xFFFFFFFF) if ok else np.uint32(0)
        o = out[i]
        for j in range(d):
            b = bits[j] & keep
            o[j] = np.uint16((b + np.uint32(0x7FFF) + ((b >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16))


@nb.njit(nogil=True, cache=True, boundscheck=False)
def weighted_means(w, idx, pos, out):
    """out[i] = sum_j w[i, j] pos[idx[i, j]] / sum_j w[i, j] (float64, the k terms added in order,
    then rounded to float32; idx < 0: weight 0), exactly the numpy fallback in placement._place."""
    n, k = w.shape
    for i in range(n):
        x = 0.0
        y = 0.0
        d = 0.0
        for j in range(k):
            c = idx[i, j]
            wj = w[i, j] if c >= 0 else 0.0
            c = max(c, 0)
            x += wj * pos[c, 0]
            y += wj * pos[c, 1]
            d += wj
        out[i, 0] = np.float32(x / d)
        out[i, 1] = np.float32(y / d)
