"""``{top_fraction: 0.3, by: similarity}``: the top fraction of the rows with a finite value of a column."""
from __future__ import annotations

from pathlib import Path

import polars as pl

from workbench.curation.rules.base import RuleKind, fmt, num
from workbench.errors import RecipeError


class TopFractionRule(RuleKind):
    key = "top_fraction"
    settings = frozenset({"by"})

    @classmethod
    def check(cls, p):
        if not isinstance(p.get("by"), str):
            raise RecipeError("top_fraction: needs `by: COLUMN`")
        f = num(p["top_fraction"], "top_fraction")
        if not 0 < f <= 1:
            raise RecipeError(f"top_fraction must be in (0, 1], got {f}")

    @classmethod
    def name(cls, p):
        return f"top {fmt(100 * float(p['top_fraction']))}% by {p['by']}"

    @classmethod
    def columns(cls, p):
        return [p["by"]]

    @classmethod
    def keep(cls, p, base: Path | None = None):
        c = pl.col(p["by"])
        # ordinal rank among the finite values: ties go to the earlier row (frames are in row order), so the
        # result is deterministic; null, NaN, +inf and -inf are never kept nor counted (as `workbench sample`)
        finite = c.cast(pl.Float64).is_finite().fill_null(False)
        k = (finite.sum() * float(p["top_fraction"])).ceil()
        return pl.when(finite).then(c).rank("ordinal", descending=True) <= k
