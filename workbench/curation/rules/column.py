"""``{column: similarity, min: 0.28}``: thresholds (min/max/above/below) or ``in``/``not_in`` on a column."""
from __future__ import annotations

from pathlib import Path

import polars as pl

from workbench.curation.rules.base import BOUNDS, RuleKind, bounded, bounds_name, check_bounds
from workbench.errors import RecipeError


class ColumnRule(RuleKind):
    key = "column"
    settings = frozenset({"min", "max", "above", "below", "in", "not_in"})
    threshold = True

    @classmethod
    def check(cls, p):
        if not isinstance(p["column"], str) or not p["column"]:
            raise RecipeError("`column:` needs a column name")
        check_bounds(p, f"column {p['column']}", extra=("in", "not_in"))
        for k in ("in", "not_in"):
            if k in p and not isinstance(p[k], list):
                raise RecipeError(f"column {p['column']}: `{k}` must be a list")
            kinds = {"number" if isinstance(v, (int, float)) and not isinstance(v, bool) else type(v).__name__
                     for v in p.get(k, []) if v is not None}
            if not kinds <= {"str", "number", "bool"} or len(kinds) > 1:
                raise RecipeError(f"column {p['column']}: `{k}` must list values of one type (strings, numbers or "
                                  f"booleans), got {p[k]!r:.80}")

    @classmethod
    def name(cls, p):
        parts = [bounds_name(p["column"], p)] if any(k in p for k in BOUNDS) else []
        if "in" in p:
            parts.append(f"{p['column']} in {p['in']}")
        if "not_in" in p:
            parts.append(f"{p['column']} not in {p['not_in']}")
        return " & ".join(parts)

    @classmethod
    def columns(cls, p):
        return [p["column"]]

    @classmethod
    def keep(cls, p, base: Path | None = None):
        c = pl.col(p["column"])
        conds = bounded(c, p)
        if "in" in p:
            conds.append(c.is_in(p["in"]))
        if "not_in" in p:
            conds.append(~c.is_in(p["not_in"]) & c.is_not_null())
        return pl.all_horizontal(conds)

    @classmethod
    def slider_column(cls, p):
        return None if "in" in p or "not_in" in p else p["column"]
