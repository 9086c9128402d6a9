"""``{drop_rows: [12, 97]}``: remove the listed global row ids (e.g. a lasso selection)."""
from __future__ import annotations

from pathlib import Path

import polars as pl

from workbench.curation.rules.base import RuleKind, check_rows
from workbench.io.schema import ROW


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
