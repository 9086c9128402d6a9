"""Slider tiles: exact counts in time independent of the row count while one threshold moves.

When a curator grabs the slider of threshold rule *i*, one build (two passes over the rows) makes a
:class:`SliderTile`:

- the rule's column is cut into bins of about equal row counts (quantiles of a strided sample);
- a table holds, per bin, how many rows carry each fail pattern of the *other* rules (patterns that
  occur, indexed; bit *i* cleared), and its cumulative sum over bins;
- every row's value and other-rules pattern are copied, grouped by bin.

A move of rule *i*'s bounds is then a difference of two cumulative rows (the bins wholly inside
the bounds) plus an exact test of the rows of the at most two bins the bounds fall in: the counts
per full fail pattern follow, and from them every rule's counts, exactly the same as re-evaluating
the recipe (the values are compared as :func:`workbench.io.kernels.set_bit_bounds` compares them:
NaN fails, bounds absent when None). The histogram of rule *i*'s column (all rows, and the rows the
other rules keep) does not depend on rule *i*'s bounds: it is computed once, at the build.

Memory: the grouped values (the column's dtype: 4 bytes a row for float32 columns), patterns
(2 bytes a row) and row positions (4 bytes a row: a map repaint flips only the rows whose state
the move changed, :meth:`SliderTile.changed`); the table is at most :data:`TABLE_CELLS` cells (one per build chunk while it is
built). The two passes of a build run on every core (numba threads), a chunk of rows each. The idea is Falcon's data tiles
(Moritz, Howe, Heer, CHI 2019), here exact through the boundary bins.
"""
from __future__ import annotations

import numpy as np

from workbench.io.kernels import _numba_tiles, pattern_counts, within

MAX_BINS = 4096
MIN_BINS = 64
TABLE_CELLS = 1 << 20  # bins x other-rule patterns (one table per build chunk)
CHUNKS = 8  # build chunks: the passes run one chunk per thread
CHUNK_ROWS = 100_000  # the fewest rows a build chunk has
SAMPLE = 1 << 20
LUT = 1 << 16


def _bounds(lo, hi) -> tuple[float, float]:
    nan = float("nan")
    return (nan if lo is None else float(lo)), (nan if hi is None else float(hi))


class SliderTile:
    """The tile of threshold rule `index` over the column values `v` (one per row, NaN = missing)
    given the rows' fail patterns `packed` (uint16) of a recipe of `k` rules. The other rules' bits
    of `packed` must not change while the tile is used; rule `index`'s bit is never read."""

    def __init__(self, v: np.ndarray, packed: np.ndarray, index: int, k: int):
        self.index, self.k, self.n = index, k, len(v)
        self.others = np.uint16(((1 << k) - 1) & ~(1 << index))
        kern = _numba_tiles()
        present = np.zeros(1 << 16, np.uint8)
        if kern is not None and self.n:
            kern[3](packed, self.others, present)
        else:
            present[np.unique(packed & self.others)] = 1
        self.patterns = np.nonzero(present)[0].astype(np.uint16)
        p = max(len(self.patterns), 1)
        self.qidx = np.full(1 << 16, -1, np.int32)
        self.qidx[self.patterns] = np.arange(len(self.patterns), dtype=np.int32)
        self.interior, lo, scale, lut = self._edges(v, max(MIN_BINS, min(MAX_BINS, TABLE_CELLS // p)))
        nbins = len(self.interior) + 1  # bins 0..nbins-1 finite values (and inf), bin nbins = NaN
        self.nbins = nbins
        self.sv = np.empty(self.n, v.dtype)
        self.so = np.empty(self.n, np.uint16)
        self.rid = np.empty(self.n, np.int32)  # each grouped row's position (the map's repaint reads it)
        if kern is not None and self.n:
            chunks = max(1, min(CHUNKS, self.n // CHUNK_ROWS))  # one per thread: the table is per chunk
            bounds = np.linspace(0, self.n, chunks + 1).astype(np.int64)
            per_chunk = np.zeros((chunks, nbins + 1, p), np.int64)
            bins = np.empty(self.n, np.uint16)
            kern[0](v, packed, self.others, self.interior, lut, lo, scale, self.qidx, per_chunk, bins, bounds)
            counts = per_chunk.sum(axis=0)
            rows = per_chunk.sum(axis=2)  # (chunk, bin)
            self.starts = np.zeros(nbins + 2, np.int64)
            np.cumsum(rows.sum(axis=0), out=self.starts[1:])
            cursor = self.starts[:-1][None, :] + np.cumsum(rows, axis=0) - rows  # chunk c after chunks < c
            kern[1](v, packed, self.others, bins, np.ascontiguousarray(cursor), self.sv, self.so, self.rid, bounds)
            del bins, per_chunk
        else:
            bins = np.searchsorted(self.interior, v, side="right").astype(np.int64)
            bins[np.isnan(v)] = nbins
            counts = np.zeros((nbins + 1, p), np.int64)
            np.add.at(counts, (bins, self.qidx[packed & self.others]), 1)
            self.starts = np.zeros(nbins + 2, np.int64)
            np.cumsum(counts.sum(axis=1), out=self.starts[1:])
            order = np.argsort(bins, kind="stable")
            self.sv[:] = v[order]
            self.so[:] = packed[order] & self.others
            self.rid[:] = order
        self.cum = np.zeros((nbins + 1, p), np.int64)  # cum[b]: rows in finite bins < b, per pattern
        np.cumsum(counts[:nbins], axis=0, out=self.cum[1:])
        self.total = counts.sum(axis=0)
        self.histogram: tuple[np.ndarray, np.ndarray] | None = None  # (all, kept by the other rules)

    @staticmethod
    def _edges(v: np.ndarray, bins: int):
        step = max(1, len(v) // SAMPLE)
        s = np.asarray(v[::step], np.float64)
        s = s[np.isfinite(s)]
        if not len(s):
            return np.zeros(0), 0.0, 0.0, np.zeros(1, np.int32)
        interior = np.unique(np.quantile(s, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
        lo, hi = float(s.min()), float(s.max())
        scale = LUT / (hi - lo) if hi > lo else 0.0
        starts = lo + np.arange(LUT) / scale if scale else np.full(1, lo)
        lut = np.searchsorted(interior, starts, side="right").astype(np.int32)
        return interior, lo, scale, lut

    def nbytes(self) -> int:
        return (self.sv.nbytes + self.so.nbytes + self.rid.nbytes + self.cum.nbytes + self.total.nbytes + self.starts.nbytes
                + self.qidx.nbytes + self.interior.nbytes)

    def passed(self, lo, lo_incl: bool, hi, hi_incl: bool) -> np.ndarray:
        """Rows within the bounds (None = no bound), per other-rules pattern (``self.patterns``)."""
        out = np.zeros(len(self.total), np.int64)
        if not len(self.patterns):
            return out
        lo_f, hi_f = _bounds(lo, hi)
        lb = -1 if lo is None else int(np.searchsorted(self.interior, lo_f, side="right"))  # the bin lo is in
        hb = self.nbins if hi is None else int(np.searchsorted(self.interior, hi_f, side="right"))
        if hb > lb + 1:  # bins lb+1 .. hb-1 lie wholly within the bounds
            out += self.cum[hb] - self.cum[lb + 1]
        kern = _numba_tiles()
        for b in sorted({lb, hb}):
            if 0 <= b < self.nbins:
                a, z = int(self.starts[b]), int(self.starts[b + 1])
                if kern is not None:
                    kern[2](self.sv, self.so, a, z, self.qidx, lo_f, lo_incl, hi_f, hi_incl, out)
                else:
                    ok = within(self.sv[a:z], lo, lo_incl, hi, hi_incl)
                    np.add.at(out, self.qidx[self.so[a:z][ok]], 1)
        return out

    def bin_of(self, t) -> int:
        return int(np.searchsorted(self.interior, float(t), side="right"))

    def changed(self, old: tuple, new: tuple) -> tuple[int, int]:
        """The span ``[a, b)`` of grouped rows outside which no row's pass/fail under rule `index`
        differs between bounds `old` and `new` (each ``(lo, lo_incl, hi, hi_incl)``): the bins
        from the lower bounds' bins to each other, and from the upper bounds' bins to each other
        (NaN rows never change); (0, 0) when nothing can."""
        spans = []
        for k in (0, 2):
            x, y = old[k], new[k]
            if x == y and old[k + 1] == new[k + 1]:
                continue
            edge = 0 if k == 0 else self.nbins - 1
            bx = edge if x is None else min(max(self.bin_of(x), 0), self.nbins - 1)
            by = edge if y is None else min(max(self.bin_of(y), 0), self.nbins - 1)
            lo_b, hi_b = min(bx, by), max(bx, by)
            spans.append((int(self.starts[lo_b]), int(self.starts[hi_b + 1])))
        if not spans:
            return 0, 0
        return min(a for a, _ in spans), max(b for _, b in spans)

    def counts(self, lo, lo_incl: bool, hi, hi_incl: bool) -> tuple[np.ndarray, np.ndarray]:
        """(removed alone, removed in order) per rule with rule `index` at these bounds."""
        ok = self.passed(lo, lo_incl, hi, hi_incl)
        bit = np.int64(1 << self.index)
        pats = self.patterns.astype(np.int64)
        return pattern_counts(np.concatenate([pats, pats | bit]), np.concatenate([ok, self.total - ok]), self.k)
