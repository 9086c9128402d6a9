"""The numba kernels behind :mod:`workbench.io.kernels` (imported lazily: numba costs ~0.5 s to import).

Module-level functions, so numba caches their machine code on disk and later processes load it.
"""
import numba as nb
import numpy as np

MAGIC = np.float32(2.0**112)  # (h & 0x7fff) << 13 read as float32, times 2^112, is the fp16 value
_OPTS = dict(nogil=True, cache=True, boundscheck=False, fastmath={"reassoc", "contract", "nsz", "arcp"})


@nb.njit(**_OPTS)
def _load_row(u, i, f, bits):
    """Unpack row i of fp16 bits into f (float32, exact); returns (finite, norm). Three simple
    loops, each vectorised (one loop doing all three was not: 2x slower)."""
    top = np.uint16(0)
    for j in range(u.shape[1]):
        top = max(top, u[i, j] & np.uint16(0x7FFF))
    for j in range(u.shape[1]):
        h = np.uint32(u[i, j])
        bits[j] = ((h & np.uint32(0x8000)) << np.uint32(16)) | ((h & np.uint32(0x7FFF)) << np.uint32(13))
    ss = 0.0
    for j in range(u.shape[1]):
        f[j] = f[j] * MAGIC
        ss += np.float64(f[j]) * np.float64(f[j])
    return top < np.uint16(0x7C00), np.sqrt(ss)  # exponent all ones somewhere: inf or NaN


@nb.njit(**_OPTS)
def stats_f16(u, total, norms, finite):
    d = u.shape[1]
    bits = np.empty(d, np.uint32)
    f = bits.view(np.float32)
    for i in range(u.shape[0]):
        ok, nrm = _load_row(u, i, f, bits)
        finite[i] = ok
        norms[i] = nrm if ok else np.nan
        if ok and nrm > 1e-12:
            inv = 1.0 / nrm
            for j in range(d):
                total[j] += np.float64(f[j]) * inv


@nb.njit(**_OPTS)
def _unit_row(u, i, f, bits):
    """Row i of fp16 bits as a float32 unit row in f (bits: its uint32 view); False (f left as
    loaded) for a NaN, inf or zero-norm row."""
    ok, nrm = _load_row(u, i, f, bits)
    if not (ok and nrm > 1e-12):
        return False
    inv = 1.0 / nrm
    for j in range(u.shape[1]):
        f[j] = np.float32(np.float64(f[j]) * inv)
    return True


@nb.njit(**_OPTS)
def normalize_f16(u, out, valid):
    d = u.shape[1]
    bits = np.empty(d, np.uint32)
    f = bits.view(np.float32)
    for i in range(u.shape[0]):
        ok = _unit_row(u, i, f, bits)
        valid[i] = ok
        for j in range(d):
            out[i, j] = f[j] if ok else 0.0


@nb.njit(nogil=True, cache=True)
def within(x, lo, lo_incl, hi, hi_incl):
    """x within the bounds (NaN bounds are absent; a NaN value fails): the one test of every live
    count, tile and map kernel."""
    ok = x == x
    if ok and lo == lo:
        ok = x >= lo if lo_incl else x > lo
    if ok and hi == hi:
        ok = x <= hi if hi_incl else x < hi
    return ok


@nb.njit(**_OPTS)
def set_bit_bounds(packed, v, bit, lo, lo_incl, hi, hi_incl):
    """Set bit `bit` of packed[r] where v[r] fails the bounds (NaN bounds are absent; NaN values fail)."""
    mask = np.uint16(1) << np.uint16(bit)
    keep_bits = ~mask
    for r in range(v.shape[0]):
        ok = within(v[r], lo, lo_incl, hi, hi_incl)
        packed[r] = (packed[r] & keep_bits) | (np.uint16(0) if ok else mask)


@nb.njit(**_OPTS)
def live_counts(packed, bins, others_mask, by_value, hist_all, hist_kept):
    """One pass: how many rows carry each fail-bit pattern (k <= 16 rules), and the histogram (bin
    index per row, >= n_bins = no value) of all rows and of rows that no rule in `others_mask` removes."""
    nb_ = hist_all.shape[0]
    for r in range(packed.shape[0]):
        p = packed[r]
        by_value[p] += 1
        b = bins[r]
        if b < nb_:
            hist_all[b] += 1
            if (p & others_mask) == 0:
                hist_kept[b] += 1


# -- slider tiles (workbench.curation.tiles) ----------------------------------------------------------------
@nb.njit(**_OPTS)
def _tile_bin(x, interior, lut, lo, scale):
    """The tile bin of value x: b such that interior[b-1] <= x < interior[b] (b = len(interior) + 1
    for NaN). A fine equal-width lookup gives a start; a short walk finds the bin exactly."""
    nb_ = interior.shape[0] + 1
    if x != x:
        return nb_
    f = (x - lo) * scale
    if f < 0.0:
        b = 0
    elif f >= lut.shape[0]:
        b = lut[lut.shape[0] - 1]
    else:
        b = lut[np.int64(f)]
    while b > 0 and x < interior[b - 1]:
        b -= 1
    while b < nb_ - 1 and x >= interior[b]:
        b += 1
    return b


_POPTS = dict(_OPTS, parallel=True)


@nb.njit(**_OPTS)
def pattern_presence(packed, others, present):
    """present[p] = 1 for every pattern p of `packed` under the mask `others`."""
    for r in range(packed.shape[0]):
        present[packed[r] & others] = 1


@nb.njit(**_POPTS)
def tile_count(v, packed, others, interior, lut, lo, scale, qidx, counts, bins_out, bounds):
    """Pass 1 of a tile build, one chunk of rows (bounds[c]..bounds[c+1]) per thread: each row's bin
    (into bins_out) and counts[chunk, bin, pattern index] of the other rules' fail patterns."""
    for c in nb.prange(bounds.shape[0] - 1):
        for r in range(bounds[c], bounds[c + 1]):
            b = _tile_bin(v[r], interior, lut, lo, scale)
            bins_out[r] = b
            counts[c, b, qidx[packed[r] & others]] += 1


@nb.njit(**_POPTS)
def tile_scatter(v, packed, others, bins, cursor, sv, so, rid, bounds):
    """Pass 2: each row's value, other-rules pattern and position, grouped by bin; chunk c writes
    from its own cursor row, so the rows of a bin stay in row order."""
    for c in nb.prange(bounds.shape[0] - 1):
        for r in range(bounds[c], bounds[c + 1]):
            b = bins[r]
            j = cursor[c, b]
            cursor[c, b] = j + 1
            sv[j] = v[r]
            so[j] = packed[r] & others
            rid[j] = r


@nb.njit(**_OPTS)
def tile_exact(sv, so, start, stop, qidx, lo, lo_incl, hi, hi_incl, passed):
    """Rows start..stop of the grouped values: passed[pattern index] += rows within the bounds (NaN
    bounds are absent; NaN values fail)."""
    for j in range(start, stop):
        if within(sv[j], lo, lo_incl, hi, hi_incl):
            passed[qidx[so[j]]] += 1


# -- prompt scoring (workbench.scoring.compute) -------------------------------------------------------------
DOT_BLOCK = 512  # rows per parallel block (each block unpacks its rows into its own buffer)


@nb.njit(**_POPTS)
def dots_f16(u, q, dots, norms, want_norms):
    """One pass over fp16 rows (as uint16 bits): dots[i, k] = row i . q[k] (float32, the exact fp16
    values), and, when `want_norms`, norms[i] = the row's L2 norm as row_stats computes it (float64
    sum of squares; NaN where a value is inf or NaN). Rows in parallel blocks."""
    n, d = u.shape
    nq = q.shape[0]
    for blk in nb.prange((n + DOT_BLOCK - 1) // DOT_BLOCK):
        bits = np.empty(d, np.uint32)
        f = bits.view(np.float32)
        for i in range(blk * DOT_BLOCK, min(n, (blk + 1) * DOT_BLOCK)):
            for j in range(d):
                h = np.uint32(u[i, j])
                bits[j] = ((h & np.uint32(0x8000)) << np.uint32(16)) | ((h & np.uint32(0x7FFF)) << np.uint32(13))
            ss = 0.0
            for j in range(d):
                v = f[j] * MAGIC
                f[j] = v
                ss += np.float64(v) * np.float64(v)
            if want_norms:
                nrm = np.sqrt(ss)
                if ss >= 4294967296.0:  # inf and NaN unpack to >= 65536 (fp16's largest number is 65504):
                    for j in range(d):  # only then look at the exponents (a row with inf or NaN has no norm)
                        if (np.uint32(u[i, j]) & np.uint32(0x7C00)) == np.uint32(0x7C00):
                            nrm = np.nan
                            break
                norms[i] = nrm
            for k in range(nq):
                acc = np.float32(0.0)
                for j in range(d):
                    acc += f[j] * q[k, j]
                dots[i, k] = acc
