"""Live counts: once score columns exist, a threshold change gives counts and a histogram at once.

    live = Live.from_collection(c, recipe)          # computes (or reads cached) score columns once
    live.set_bounds(2, min=0.31)                     # rule 3 is now `... >= 0.31`
    live.counts()                                    # {"rows", "kept", "removed", "rules": [...]}
    live.histogram(2)                                # 64 bins of rule 3's column: all rows / kept by the others

Nothing here reads embeddings: the threshold columns are held in memory, with one 16-bit fail
pattern per row (bit i set = rule i removes the row; up to 16 rules). A change rewrites one bit in
one pass, and a second pass (:func:`workbench.io.kernels.live_counts`) counts rows per pattern (from
which every rule's counts follow) and fills the histogram.

From :data:`TILE_ROWS` rows on, moving one threshold rule's bounds again and again (a slider being
dragged) costs time independent of the row count: the first move of that rule builds its
:class:`~workbench.curation.tiles.SliderTile` (two passes), and each move after it is answered
from the tile, exactly. The rule's bit in the fail patterns is written once the drag ends (another
rule moves, or the patterns are read: :meth:`first_reason`, :meth:`selection`, :attr:`packed`).

Row order: a :class:`Live` holds its frame in row-id order (sorted when given otherwise; a row id
listed twice is refused), so ``rows``, ``packed``, :meth:`Live.first_reason` and the selection are
per row id, ascending, whatever order the frame came in.
"""
from __future__ import annotations

import functools
import threading

import numpy as np
import polars as pl

from workbench.errors import RecipeError
from workbench.io.kernels import MAX_LIVE_RULES, live_counts, set_bit_bounds, within
from workbench.curation.recipe import Recipe, Rule, Selection
from workbench.curation.tiles import SliderTile
from workbench.curation.rules.base import BOUNDS as _BOUNDS
from workbench.io.schema import ROW

BINS = 64
TILE_ROWS = 2_000_000  # from this many rows on, a dragged slider is answered from its tile


def _locked(method):
    """One change or read of a :class:`Live` at a time: the notebook recolours its map from a timer
    thread while the next slider move arrives (a half-written drag would give wrong counts)."""
    @functools.wraps(method)
    def run(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)
    return run


def _threshold_column(rule: Rule) -> str | None:
    """The numeric column a bounds-only rule compares, or None for other rules (its kind says:
    :meth:`~workbench.curation.rules.base.RuleKind.slider_column`)."""
    return rule.spec.slider_column(rule.params)


class Live:
    def __init__(self, frame: pl.DataFrame, recipe: Recipe, bins: int = BINS, tile_rows: int = TILE_ROWS):
        if len(recipe.rules) > MAX_LIVE_RULES:
            raise RecipeError(f"live counts handle up to {MAX_LIVE_RULES} rules; this recipe has {len(recipe.rules)}")
        missing = sorted((recipe.columns() | {ROW}) - set(frame.columns))
        if missing:
            raise RecipeError(f"live counts need column(s) {missing}, which the frame lacks")
        self.recipe = Recipe(list(recipe.rules), recipe.name, recipe.description, recipe.base)
        self.n_bins = bins
        if frame[ROW].null_count():
            raise RecipeError(f"live counts need a row id on every row (row {int(frame[ROW].is_null().arg_true()[0])} "
                              "has none)")
        if not frame[ROW].is_sorted():  # row-id order: rules that depend on order (dedup, top_fraction) and
            frame = frame.sort(ROW)     # every per-row array here (packed, values, bins) follow row ids
        self.rows = frame[ROW].to_numpy().astype(np.int64)
        if len(self.rows) > 1 and not (np.diff(self.rows) > 0).all():
            twice = int(self.rows[1:][np.diff(self.rows) == 0][0])
            raise RecipeError(f"live counts need one line per row: row id {twice} is listed twice")
        self._frame = frame
        self._packed = np.zeros(len(self.rows), np.uint16)
        for i, rule in enumerate(self.recipe.rules):
            self._set_bit(i, ~frame.select(rule.keep(self.recipe.base)).to_series().to_numpy())
        self._values: dict[str, np.ndarray] = {}
        self._bins: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.tile_rows = tile_rows
        self._tile: SliderTile | None = None  # the dragged rule's tile
        self._pending: tuple | None = None  # its bounds, not yet written into the rule's bit
        self._lock = threading.RLock()

    @property
    @_locked
    def packed(self) -> np.ndarray:
        """(n,) uint16 fail patterns, bit i set = rule i removes the row (current: a drag's bounds
        are written first)."""
        self._flush()
        return self._packed

    @property
    def lock(self) -> threading.RLock:
        """Held by every change and read; hold it around :meth:`kept_inputs` and their use."""
        return self._lock

    @_locked
    def kept_inputs(self) -> tuple[np.ndarray, int, tuple | None]:
        """What decides which rows are kept, without writing a drag's bit: ``(packed, mask,
        pending)``; a row is kept when no `mask` bit of ``packed[row]`` is set and, when `pending`
        ``(values, lo, lo_incl, hi, hi_incl)`` is given (a slider being dragged), its value is
        within those bounds (None: no bound; NaN fails). For passes over every row that must not
        wait for the drag's bit (the map's density raster)."""
        k = len(self.recipe.rules)
        mask = (1 << k) - 1
        if self._pending is None:
            return self._packed, mask, None
        v, index, lo, lo_incl, hi, hi_incl = self._pending
        return self._packed, mask & ~(1 << index), (v, lo, lo_incl, hi, hi_incl)

    @_locked
    def patterns_at(self, index) -> np.ndarray:
        """The current fail patterns of the rows at positions `index` (a drag's pending bounds
        applied to those rows only: nothing is written)."""
        index = np.asarray(index, dtype=np.int64)
        p = self._packed[index].copy()
        if self._pending is not None:
            v, i, lo, lo_incl, hi, hi_incl = self._pending
            bit = np.uint16(1 << i)
            p &= ~bit
            p[~within(v[index], lo, lo_incl, hi, hi_incl)] |= bit
        return p

    def _flush(self) -> None:
        if self._pending is not None:
            set_bit_bounds(self._packed, *self._pending)  # NaN (null) fails, as in the recipe
            self._pending = None

    def _drop_tile(self) -> None:
        self._flush()
        self._tile = None

    def _set_bit(self, i: int, fail: np.ndarray) -> None:
        mask = np.uint16(1 << i)
        self._packed &= ~mask
        self._packed |= fail.astype(np.uint16) << np.uint16(i)

    @property
    @_locked
    def fail(self) -> np.ndarray:
        """(k, n) bool: rule i removes row j."""
        self._flush()
        return np.stack([(self._packed >> np.uint16(i)) & 1 == 1 for i in range(len(self.recipe.rules))]) \
            if self.recipe.rules else np.zeros((0, len(self.rows)), bool)

    @classmethod
    def from_collection(cls, collection, recipe: Recipe, encoder=None, progress: bool = False, bins: int = BINS) -> "Live":
        from workbench.curation.columns import recipe_frame

        lf, _ = recipe_frame(collection, recipe, encoder, progress=progress)
        cols = sorted(recipe.columns() | {ROW})
        return cls(lf.select(cols).collect(), recipe, bins)

    # -- values and bins -----------------------------------------------------------------------------
    def values(self, column: str) -> np.ndarray:
        """A numeric column with NaN for nulls (float32 columns stay float32), cached."""
        if column not in self._values:
            s = self._frame[column]
            if not s.dtype.is_numeric():
                raise RecipeError(f"column {column!r} is not numeric ({s.dtype})")
            dt = pl.Float32 if s.dtype == pl.Float32 else pl.Float64
            self._values[column] = s.cast(dt).fill_null(float("nan")).to_numpy()
        return self._values[column]

    def edges(self, column: str) -> np.ndarray:
        return self._binned(column)[1]

    @_locked
    def _binned(self, column: str):
        if column not in self._bins:
            v = self.values(column)
            ok = np.isfinite(v)
            lo, hi = (float(v[ok].min()), float(v[ok].max())) if ok.any() else (0.0, 1.0)
            if hi <= lo:
                hi = lo + 1.0
            edges = np.linspace(lo, hi, self.n_bins + 1)
            b = np.full(len(v), 255, np.uint8)
            idx = np.floor((v[ok] - lo) / (hi - lo) * self.n_bins)
            b[ok] = np.clip(idx, 0, self.n_bins - 1).astype(np.uint8)
            self._bins[column] = (b, edges)
        return self._bins[column]

    # -- changes -------------------------------------------------------------------------------------
    @_locked
    def set_bounds(self, index: int, **bounds) -> None:
        """Replace the thresholds (min/max/above/below) of threshold rule `index`."""
        rule = self.recipe.rules[index]
        column = _threshold_column(rule)
        if column is None:
            raise RecipeError(f"rule {rule.name!r} has no threshold to change")
        unknown = set(bounds) - set(_BOUNDS)
        if unknown:
            raise RecipeError(f"unknown bound(s) {sorted(unknown)}: use min, max, above, below")
        params = {k: v for k, v in rule.params.items() if k not in _BOUNDS}
        params.update({k: v for k, v in bounds.items() if v is not None})
        new = Rule(params, rule.name if rule.name != rule.default_name else "")
        v = self.values(column)
        cast = (lambda t: float(np.float32(t))) if v.dtype == np.float32 else float  # compare as polars does
        lo = hi = None
        lo_incl = hi_incl = True
        for k in ("min", "above"):
            if k in params:
                t = cast(params[k])
                if lo is None or t > lo or (t == lo and k == "above"):
                    lo, lo_incl = t, k == "min"
        for k in ("max", "below"):
            if k in params:
                t = cast(params[k])
                if hi is None or t < hi or (t == hi and k == "below"):
                    hi, hi_incl = t, k == "max"
        if len(self.rows) >= self.tile_rows:
            if self._tile is None or self._tile.index != index:
                self._drop_tile()  # the last drag's bit written: the new tile reads the other rules' bits
                self._tile = SliderTile(v, self._packed, index, len(self.recipe.rules))
            self._pending = (v, index, lo, lo_incl, hi, hi_incl)
        else:
            self._drop_tile()
            set_bit_bounds(self._packed, v, index, lo, lo_incl, hi, hi_incl)  # NaN (null) fails, as in the recipe
        self.recipe.rules[index] = new

    @_locked
    def grab(self, index: int) -> bool:
        """Build threshold rule `index`'s slider tile now (from :data:`TILE_ROWS` rows on), so that
        its first move is as fast as the next: what a panel does when it shows the slider. True
        when a tile was built (or is there)."""
        rule = self.recipe.rules[index]
        column = _threshold_column(rule)
        if column is None or len(self.rows) < self.tile_rows:
            return False
        if self._tile is None or self._tile.index != index:
            self._drop_tile()
            self._tile = SliderTile(self.values(column), self._packed, index, len(self.recipe.rules))
            self._tile.histogram = live_counts(self._packed, len(self.recipe.rules), self._binned(column)[0],
                                               index, self.n_bins)[2:]
        return True

    @_locked
    def set_rule(self, index: int, rule: Rule | dict) -> None:
        """Replace rule `index` by any rule whose columns are already loaded."""
        rule = rule if isinstance(rule, Rule) else Rule.parse(rule)
        missing = rule.columns() - set(self._frame.columns)
        if missing:
            raise RecipeError(f"rule {rule.name!r} needs column(s) {sorted(missing)} that are not loaded")
        self._drop_tile()
        self._set_bit(index, ~self._frame.select(rule.keep(self.recipe.base)).to_series().to_numpy())
        self.recipe.rules[index] = rule

    # -- results -------------------------------------------------------------------------------------
    @_locked
    def counts(self, histogram_of: int | None = None) -> dict:
        col = _threshold_column(self.recipe.rules[histogram_of]) if histogram_of is not None else None
        tile = self._tile
        if tile is not None and self._pending is not None and histogram_of in (None, tile.index):
            alone, seq = tile.counts(*self._pending[2:])
            if col:
                if tile.histogram is None:  # the other rules' bits are fixed during the drag
                    tile.histogram = live_counts(self._packed, len(self.recipe.rules), self._binned(col)[0],
                                                 tile.index, self.n_bins)[2:]
                h_all, h_kept = tile.histogram
        else:
            self._flush()
            bins = self._binned(col)[0] if col else None
            alone, seq, h_all, h_kept = live_counts(self._packed, len(self.recipe.rules), bins,
                                                    -1 if histogram_of is None else histogram_of, self.n_bins)
        n = len(self.rows)
        kept = n - int(seq.sum())
        out = {"rows": n, "kept": kept, "removed": n - kept, "rules": [
            {"rule": r.name, "removed_alone": int(a), "removed_in_order": int(s), "remaining": int(n - seq[:i + 1].sum())}
            for i, (r, a, s) in enumerate(zip(self.recipe.rules, alone, seq))]}
        if col:
            out["histogram"] = {"column": col, "edges": self._binned(col)[1].tolist(), "all": h_all.tolist(),
                                "kept_by_other_rules": h_kept.tolist()}
        return out

    def histogram(self, index: int) -> dict:
        """64 bins of threshold rule `index`'s column: all rows, and the rows the other rules keep."""
        return self.counts(histogram_of=index)["histogram"]

    @_locked
    def first_reason(self, index=None) -> np.ndarray:
        """Index of the first rule that removes each row (the lowest set bit of its fail pattern),
        -1 when kept; for the row positions `index` only when given (then a drag's bit is not
        written: only those rows are tested against its bounds)."""
        if index is None:
            self._flush()
            p = self._packed.astype(np.int64)
        else:
            p = self.patterns_at(index).astype(np.int64)
        low = p & -p
        out = np.full(len(p), -1, np.int64)
        nz = low > 0
        out[nz] = np.log2(low[nz]).astype(np.int64)
        return out

    @_locked
    def selection(self) -> Selection:
        k = len(self.recipe.rules)
        fail = self.fail
        reason = self.first_reason().astype(np.int16)
        overlaps = np.array([[np.count_nonzero(fail[i] & fail[j]) for j in range(k)] for i in range(k)],
                            dtype=np.int64).reshape(k, k)
        return Selection(self.rows, reason, [r.name for r in self.recipe.rules], np.diag(overlaps).copy(), overlaps)
