"""``{head: aesthetic-v2-l14, min: 5}``: a detector head's score (a head name or a head file), thresholded."""
from __future__ import annotations

import re
from pathlib import Path

import polars as pl

from workbench.curation.rules.base import BOUNDS, RuleKind, bounded, bounds_name, check_bounds
from workbench.errors import RecipeError


def head_column(p) -> str:
    """The score column a head rule reads (``head_`` + the head's name or file stem)."""
    h = p["head"]
    stem = Path(h).stem if ("/" in h or "." in h) else h
    return "head_" + re.sub(r"[^0-9A-Za-z_+-]+", "_", stem)


class HeadRule(RuleKind):
    key = "head"
    settings = frozenset(BOUNDS)
    threshold = True
    rankable = True
    scorer_names = ("head",)
    file_params = {"head": ("path",)}

    @classmethod
    def check(cls, p):
        if not isinstance(p["head"], str) or not p["head"]:
            raise RecipeError("`head:` needs a head name (e.g. nsfw-l14) or a head file")
        check_bounds(p, f"head {p['head']}")

    @classmethod
    def name(cls, p):
        return bounds_name(p["head"], p, " ")

    @classmethod
    def columns(cls, p):
        return [head_column(p)]

    @classmethod
    def keep(cls, p, base: Path | None = None):
        return pl.all_horizontal(bounded(pl.col(head_column(p)), p))

    @classmethod
    def score_requests(cls, p):
        return [{"scorer": "head", "head": p["head"], "column": head_column(p)}]

    @classmethod
    def scorer(cls, request, collection, encoder=None, base=None, device="auto"):
        from workbench.scoring.scorers import HeadScorer

        return HeadScorer(request["column"], request["head"], base=base)
