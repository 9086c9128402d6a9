"""``{keep_rows: [12, 97]}``: keep only the listed global row ids."""
from __future__ import annotations

from pathlib import Path

import polars as pl

from workbench.curation.rules.base import RuleKind, check_rows
from workbench.io.schema import ROW


class KeepRowsRule(RuleKind):
    key = "keep_rows"

    @classmethod
    def check(cls, p):
        check_rows(p, "keep_rows")

    @classmethod
    def name(cls, p):
        return f"keep only {len(p['keep_rows'])} listed rows"

    @classmethod
    def columns(cls, p):
        return [ROW]

    @classmethod
    def keep(cls, p, base: Path | None = None):
        return pl.col(ROW).is_in(p["keep_rows"])
