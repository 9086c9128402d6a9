"""numba kernels of :mod:`workbench.map.density` (imported lazily; compiled once, cached on disk)."""
import numba as nb
import numpy as np

from workbench.io.kernels_numba import within

_OPTS = dict(nogil=True, cache=True, boundscheck=False, parallel=True)


@nb.njit(**_OPTS)
def pixels(x, y, x0, sx, y0, sy, w, h, out, bounds):
    """out[r] = the pixel (row-major, y up) of point r in the window, -1 outside it or NaN."""
    for c in nb.prange(bounds.shape[0] - 1):
        for r in range(bounds[c], bounds[c + 1]):
            xx, yy = x[r], y[r]
            p = -1
            if xx == xx and yy == yy:
                i = np.int64(np.floor((xx - x0) * sx))
                j = np.int64(np.floor((yy - y0) * sy))
                if 0 <= i < w and 0 <= j < h:
                    p = np.int32((h - 1 - j) * w + i)
            out[r] = p


@nb.njit(**_OPTS)
def counts(pix, packed, mask, v, lo, lo_incl, hi, hi_incl, use_v, grids, bounds):
    """grids[c, 0, p] / grids[c, 1, p]: rows of chunk c in pixel p kept / removed. A row is kept when
    none of the `mask` bits of its fail pattern is set and, with `use_v`, its value v[r] is within
    the bounds (NaN bounds absent, NaN values fail: the pending slider of a drag)."""
    for c in nb.prange(bounds.shape[0] - 1):
        g = grids[c]
        for r in range(bounds[c], bounds[c + 1]):
            p = pix[r]
            if p < 0:
                continue
            ok = (packed[r] & mask) == 0
            if ok and use_v:
                ok = within(v[r], lo, lo_incl, hi, hi_incl)
            g[0 if ok else 1, p] += 1


@nb.njit(**_OPTS)
def flips(sv, so, rid, pix, old, old_incl, new, new_incl, grids, bounds):
    """Rows bounds[c]..bounds[c+1] of a slider tile's grouped rows (value sv, other rules' pattern
    so, position rid): a row the other rules keep whose pass under the dragged rule differs between
    the `old` and `new` bounds ((lo, hi), NaN absent) moves between kept (grids[c, 0]) and removed
    (grids[c, 1]) in its pixel."""
    for c in nb.prange(bounds.shape[0] - 1):
        g = grids[c]
        for j in range(bounds[c], bounds[c + 1]):
            if so[j] != 0:
                continue
            p = pix[rid[j]]
            if p < 0:
                continue
            x = sv[j]
            was = within(x, old[0], old_incl[0], old[1], old_incl[1])
            now = within(x, new[0], new_incl[0], new[1], new_incl[1])
            if was != now:
                d = 1 if now else -1
                g[0, p] += d
                g[1, p] -= d
