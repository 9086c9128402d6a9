"""The numba kernels behind :mod:`workbench.kernels` (imported lazily: numba costs ~0.5 s to import).

Module-level functions, so numba caches their machine code on disk and later processes load it.
"""
import numba as nb
import numpy as np

MAGIC = np.float32(2.0**112)  # (h & 0x7fff) << 13 read as float32, times 2^112, is the fp16 value
_OPTS = dict(nogil=True, cache=True, boundscheck=False, fastmath={"reassoc", "contract", "nsz", "arcp"})


@nb.njit(**_OPTS)
def _load_row(u, i, f, bits):
    """Unpack row i of fp16 bits into f (float32, exact); returns (finite, norm)."""
    bad = 0
    for j in range(u.shape[1]):
        h = np.uint32(u[i, j])
        bits[j] = ((h & np.uint32(0x8000)) << np.uint32(16)) | ((h & np.uint32(0x7FFF)) << np.uint32(13))
        bad += (h & np.uint32(0x7C00)) == np.uint32(0x7C00)  # exponent all ones: inf or NaN
    ss = 0.0
    for j in range(u.shape[1]):
        f[j] = f[j] * MAGIC
        ss += np.float64(f[j]) * np.float64(f[j])
    return bad == 0, np.sqrt(ss)


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
def normalize_f16(u, out, valid):
    d = u.shape[1]
    bits = np.empty(d, np.uint32)
    f = bits.view(np.float32)
    for i in range(u.shape[0]):
        ok, nrm = _load_row(u, i, f, bits)
        ok = ok and nrm > 1e-12
        valid[i] = ok
        if ok:
            inv = 1.0 / nrm
            for j in range(d):
                out[i, j] = np.float32(np.float64(f[j]) * inv)
        else:
            for j in range(d):
                out[i, j] = 0.0


@nb.njit(**_OPTS)
def live_counts(fail, bins, skip, alone, seq, hist_all, hist_kept):
    """One pass over per-rule fail flags (k, n): rows each rule removes alone and in order, and the
    histogram (bin index per row, 255 = no value) of all rows and of rows no rule but `skip` removes."""
    k, n = fail.shape
    nb_ = hist_all.shape[0]
    for r in range(n):
        first = -1
        others = False
        for i in range(k):
            if fail[i, r]:
                alone[i] += 1
                if first < 0:
                    first = i
                if i != skip:
                    others = True
        if first >= 0:
            seq[first] += 1
        b = bins[r]
        if b < nb_:
            hist_all[b] += 1
            if not others:
                hist_kept[b] += 1
