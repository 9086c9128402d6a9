"""Every row on the map: a raster of how many kept and removed rows fall in each pixel.

    dm = DensityMap(x, y)                        # the map positions of every row (NaN: not on the map)
    r = dm.raster(live_packed, mask)             # Raster: kept / removed counts per pixel
    r.png()                                      # kept blue, removed red, by share; opacity by density
    dm.set_window((x0, x1, y0, y1)); dm.raster(...)   # zoomed: the window re-rastered at full resolution

The drawn points of the notebook's map are a sample; the raster under them counts *all* rows. Each
row's pixel in the current window is computed once per window (4 bytes a row); a repaint after a
threshold change is one parallel pass over the pixel indices and the rows' fail patterns (and, during
a slider drag, the dragged rule's column, tested against its pending bounds: see
:meth:`workbench.curation.live.Live.kept_inputs`), so it needs no kept mask to be materialised.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass

import numpy as np

from workbench.errors import WorkbenchError
from workbench.io.kernels import within

DEFAULT_SIZE = (640, 420)  # pixels (width, height)
CHUNK_ROWS = 250_000  # the fewest rows a parallel chunk has
CHUNKS = 8
KEPT_RGB = np.array([0x1F, 0x77, 0xB4], np.float64)  # the map's kept blue
REMOVED_RGB = np.array([0xD6, 0x27, 0x28], np.float64)  # and removed red


def _threads() -> int:
    """Chunks for the parallel passes: one per numba thread (each has its own grid), at most CHUNKS."""
    k = _kernels()
    if k is None:
        return 1
    import numba

    return max(1, min(CHUNKS, numba.get_num_threads()))


def _kernels():
    if os.environ.get("WORKBENCH_NO_NUMBA"):
        return None
    try:
        from workbench.map import density_numba
    except ImportError:  # pragma: no cover - numba ships with umap-learn
        return None
    return density_numba


@dataclass
class Raster:
    """Counts per pixel, rows top to bottom (``kept[0]`` is the window's top edge)."""

    kept: np.ndarray  # (h, w) int64
    removed: np.ndarray  # (h, w) int64
    window: tuple[float, float, float, float]  # x0, x1, y0, y1

    @property
    def rows(self) -> int:
        return int(self.kept.sum() + self.removed.sum())

    def rgba(self, max_alpha: float = 0.85) -> np.ndarray:
        """(h, w, 4) uint8: each pixel's colour is the blend of kept blue and removed red by the
        share of its rows kept; its opacity grows with the log of its row count (empty: clear)."""
        total = (self.kept + self.removed).astype(np.float64)
        share = np.divide(self.kept, total, out=np.zeros_like(total), where=total > 0)[..., None]
        rgb = share * KEPT_RGB + (1 - share) * REMOVED_RGB
        top = np.log1p(total.max()) if total.max() > 0 else 1.0
        alpha = np.where(total > 0, 0.15 + (max_alpha - 0.15) * np.log1p(total) / top, 0.0)
        return np.dstack([rgb, 255 * alpha]).round().astype(np.uint8)

    def png(self) -> bytes:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(self.rgba(), "RGBA").save(buf, format="PNG", compress_level=1)
        return buf.getvalue()

    def data_uri(self) -> str:
        import base64

        return "data:image/png;base64," + base64.b64encode(self.png()).decode("ascii")


class DensityMap:
    """The map positions of every row (row-id order, NaN where a row is not on the map), binned into
    the pixels of a window of `size` (width, height)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, size: tuple[int, int] = DEFAULT_SIZE):
        self.x = np.ascontiguousarray(x, np.float32)
        self.y = np.ascontiguousarray(y, np.float32)
        if self.x.shape != self.y.shape or self.x.ndim != 1:
            raise WorkbenchError(f"map positions must be two equal 1-d arrays, got {self.x.shape} and {self.y.shape}")
        w, h = (int(v) for v in size)
        if w < 1 or h < 1:
            raise WorkbenchError(f"a raster needs at least 1 x 1 pixels, got {size}")
        self.size = (w, h)
        ok = np.isfinite(self.x) & np.isfinite(self.y)
        if ok.any():
            x0, x1 = float(self.x[ok].min()), float(self.x[ok].max())
            y0, y1 = float(self.y[ok].min()), float(self.y[ok].max())
        else:
            x0 = x1 = y0 = y1 = 0.0
        pad_x, pad_y = max((x1 - x0) * 0.02, 1e-6), max((y1 - y0) * 0.02, 1e-6)
        self.extent = (x0 - pad_x, x1 + pad_x, y0 - pad_y, y1 + pad_y)
        self.bounds = np.linspace(0, len(self.x), max(1, min(_threads(), len(self.x) // CHUNK_ROWS)) + 1).astype(np.int64)
        self.window = None
        self.pix = None
        self.set_window(None)

    def set_window(self, window=None) -> None:
        """Bin every row into the pixels of `window` ``(x0, x1, y0, y1)`` (None: the whole map)."""
        window = self.extent if window is None else tuple(float(v) for v in window)
        x0, x1, y0, y1 = window
        if not (x1 > x0 and y1 > y0) or not np.all(np.isfinite(window)):
            raise WorkbenchError(f"a map window needs x0 < x1 and y0 < y1, got {window}")
        if window == self.window:
            return
        w, h = self.size
        sx, sy = w / (x1 - x0), h / (y1 - y0)
        pix = np.empty(len(self.x), np.int32)
        k = _kernels()
        if k is not None and len(pix):
            k.pixels(self.x, self.y, x0, sx, y0, sy, w, h, pix, self.bounds)
        else:
            with np.errstate(invalid="ignore"):
                i = np.floor((self.x.astype(np.float64) - x0) * sx)
                j = np.floor((self.y.astype(np.float64) - y0) * sy)
                inside = (i >= 0) & (i < w) & (j >= 0) & (j < h)
            pix[:] = -1
            pix[inside] = ((h - 1 - j[inside]) * w + i[inside]).astype(np.int32)
        self.window, self.pix = window, pix

    def raster(self, packed: np.ndarray, mask: int, pending=None) -> Raster:
        """Kept and removed counts per pixel of the current window. A row is kept when no `mask` bit
        of its fail pattern `packed` is set and, with `pending` ``(v, lo, lo_incl, hi, hi_incl)``,
        its value ``v[row]`` is within those bounds (None: no bound; NaN fails)."""
        w, h = self.size
        if len(packed) != len(self.pix):
            raise WorkbenchError(f"{len(packed):,} fail patterns for a map of {len(self.pix):,} rows")
        nan = float("nan")
        v, lo, lo_incl, hi, hi_incl = pending if pending is not None else (None, None, True, None, True)
        lo_f, hi_f = (nan if lo is None else float(lo)), (nan if hi is None else float(hi))
        k = _kernels()
        if k is not None and len(packed):
            grids = np.zeros((len(self.bounds) - 1, 2, w * h), np.int32)  # a grid per chunk (one per thread)
            vv = v if v is not None else np.zeros(1, np.float32)
            k.counts(self.pix, packed, np.uint16(mask), vv, lo_f, bool(lo_incl), hi_f, bool(hi_incl), v is not None,
                     grids, self.bounds)
            g = grids.sum(axis=0, dtype=np.int64)
        else:
            ok = (packed & np.uint16(mask)) == 0
            if v is not None:
                ok &= within(v, lo, lo_incl, hi, hi_incl)
            on = self.pix >= 0
            g = np.stack([np.bincount(self.pix[on & ok], minlength=w * h),
                          np.bincount(self.pix[on & ~ok], minlength=w * h)]).astype(np.int64)
        return Raster(g[0].reshape(h, w), g[1].reshape(h, w), self.window)

    def update(self, prev: Raster, tile, old: tuple, new: tuple) -> Raster | None:
        """`prev` (this window's raster with the dragged rule at bounds `old`) with that rule at
        bounds `new` (each ``(lo, lo_incl, hi, hi_incl)``, None: no bound): only the rows of `tile`
        (:class:`workbench.curation.tiles.SliderTile`) in the bins between the old and new
        thresholds are visited, and those whose state flips move between kept and removed. None
        when that span is a third of the rows or more (a full :meth:`raster` is as cheap)."""
        if prev.window != self.window or len(tile.rid) != len(self.pix):
            return None
        a, b = tile.changed(old, new)
        if b - a >= len(self.pix) // 3:
            return None
        kept, removed = prev.kept.copy(), prev.removed.copy()
        k = _kernels()
        if b > a and k is not None:
            w, h = self.size
            chunks = max(1, min(_threads(), (b - a) // CHUNK_ROWS))
            bounds = np.linspace(a, b, chunks + 1).astype(np.int64)
            grids = np.zeros((chunks, 2, w * h), np.int32)
            nan = float("nan")

            def pair(t):
                return np.array([nan if t[0] is None else float(t[0]), nan if t[2] is None else float(t[2])])

            k.flips(tile.sv, tile.so, tile.rid, self.pix, pair(old), np.array([bool(old[1]), bool(old[3])]),
                    pair(new), np.array([bool(new[1]), bool(new[3])]), grids, bounds)
            g = grids.sum(axis=0, dtype=np.int64)
            kept += g[0].reshape(h, w)
            removed += g[1].reshape(h, w)
        elif b > a:
            sl = slice(a, b)
            others_ok = tile.so[sl] == 0
            p = self.pix[tile.rid[sl]]
            x = tile.sv[sl]
            flip = others_ok & (p >= 0) & (within(x, *old) != within(x, *new))
            now = within(x, *new)[flip]
            w, h = self.size
            d = np.bincount(p[flip], weights=np.where(now, 1, -1), minlength=w * h).astype(np.int64).reshape(h, w)
            kept += d
            removed -= d
        return Raster(kept, removed, self.window)
