"""``{top_fraction: 0.3, by: similarity}``: the top fraction of the rows by a column.

Two cuts (``cut``):

- ``rows`` (the default): exactly ``ceil(finite * f)`` rows among the rows with a finite value,
  ties going to the earlier row (deterministic; null, NaN and +-inf never kept nor counted).
- ``datacomp``: DataComp's ``get_threshold`` (``baselines/apply_filter.py``), as its code computes
  it: ``n = int(len(pool) * f)`` over *all* rows, the threshold is ``-np.sort(-scores)[n]`` (NaN and
  null sort last), and every row whose score is ``>=`` the threshold is kept, ties included (so
  possibly more than ``n`` rows). Where DataComp's code fails (``n`` past the last row, i.e.
  ``f = 1``) every row with a number is kept; a NaN threshold keeps nothing, as in numpy.
"""
from __future__ import annotations

from pathlib import Path

import polars as pl

from workbench.curation.rules.base import RuleKind, fmt, num
from workbench.errors import RecipeError

CUTS = ("rows", "datacomp")


def datacomp_top_fraction(c: pl.Expr, fraction: float) -> pl.Expr:
    """DataComp's top-fraction keep expression over `c` (see the module's docstring)."""
    x = c.cast(pl.Float64)
    bad = x.is_null() | x.is_nan()
    n = (pl.len().cast(pl.Float64) * float(fraction)).floor().cast(pl.Int64)  # int(len(df) * fraction)
    # np.sort(-values): ascending, NaN (and pandas' null, which is NaN) last; polars sorts NaN last too
    ranked = pl.when(bad).then(pl.lit(float("nan"))).otherwise(-x).sort()
    threshold = -ranked.slice(n, 1).first()  # null when n is past the last row
    keep = x >= threshold  # polars orders NaN above every number: a NaN threshold keeps no number
    return ~bad & (keep.fill_null(False) | (n >= pl.len()))


class TopFractionRule(RuleKind):
    key = "top_fraction"
    settings = frozenset({"by", "cut"})

    @classmethod
    def check(cls, p):
        if not isinstance(p.get("by"), str):
            raise RecipeError("top_fraction: needs `by: COLUMN`")
        f = num(p["top_fraction"], "top_fraction")
        if not 0 < f <= 1:
            raise RecipeError(f"top_fraction must be in (0, 1], got {f}")
        if p.get("cut", "rows") not in CUTS:
            raise RecipeError(f"top_fraction: cut must be one of {', '.join(CUTS)}, got {p['cut']!r}")

    @classmethod
    def name(cls, p):
        cut = " (DataComp's cut)" if p.get("cut") == "datacomp" else ""
        return f"top {fmt(100 * float(p['top_fraction']))}% by {p['by']}{cut}"

    @classmethod
    def columns(cls, p):
        return [p["by"]]

    @classmethod
    def keep(cls, p, base: Path | None = None):
        c = pl.col(p["by"])
        if p.get("cut") == "datacomp":
            return datacomp_top_fraction(c, float(p["top_fraction"]))
        # ordinal rank among the finite values: ties go to the earlier row (frames are in row order), so the
        # result is deterministic; null, NaN, +inf and -inf are never kept nor counted (as `workbench sample`)
        finite = c.cast(pl.Float64).is_finite().fill_null(False)
        k = (finite.sum() * float(p["top_fraction"])).ceil()
        return pl.when(finite).then(c).rank("ordinal", descending=True) <= k
