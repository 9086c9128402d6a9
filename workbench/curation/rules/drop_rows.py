"""``{drop_rows: [12, 97]}``: remove the listed global row ids (e.g. a lasso selection)."""
from __future__ import annotations

from pathlib import Path

import polars as pl

from workbench.curation.rules.base import RuleKind
from workbench.errors import RecipeError
from workbench.io.schema import ROW


def check_rows(p, key: str) -> None:
    rows = p[key]
    if not isinstance(rows, list) or not all(isinstance(r, int) and not isinstance(r, bool) and r >= 0 for r in rows):
        raise RecipeError(f"{key}: must be a list of global row ids (integers >= 0)")


class DropRowsRule(RuleKind):
    key = "drop_rows"

    @classmethod
    def check(cls, p):
        check_rows(p, "drop_rows")

    @classmethod
    def name(cls, p):
        return f"drop {len(p['drop_rows'])} listed rows"

    @classmethod
    def columns(cls, p):
        return [ROW]

    @classmethod
    def keep(cls, p, base: Path | None = None):
        return ~pl.col(ROW).is_in(p["drop_rows"])
