"""``{language: en, min_confidence: 0.5}``: the caption's language (the metadata's ``language``
column, or fastText language ID computed offline)."""
from __future__ import annotations

from pathlib import Path

import polars as pl

from workbench.curation.rules.base import RuleKind, num, strings
from workbench.errors import RecipeError


class LanguageRule(RuleKind):
    key = "language"
    settings = frozenset({"min_confidence"})
    scorer_names = ("language",)

    @classmethod
    def check(cls, p):
        strings(p["language"], "language")
        if "min_confidence" in p and not 0 <= num(p["min_confidence"], "language: min_confidence") <= 1:
            raise RecipeError("language: min_confidence must be in [0, 1]")

    @classmethod
    def name(cls, p):
        return f"language in {strings(p['language'], 'language')}"

    @classmethod
    def columns(cls, p):
        return ["language"] + (["language_confidence"] if "min_confidence" in p else [])

    @classmethod
    def keep(cls, p, base: Path | None = None):
        keep = pl.col("language").is_in(strings(p["language"], "language"))
        if "min_confidence" in p:
            keep = keep & (pl.col("language_confidence") >= float(p["min_confidence"]))
        return keep

    @classmethod
    def score_requests(cls, p):
        return [{"scorer": "language"}]

    @classmethod
    def scorer(cls, request, collection, encoder=None, base=None, device="auto"):
        if "language" in collection.metadata.collect_schema().names():
            return None  # the metadata's own language column
        from workbench.scoring.scorers import LanguageScorer

        return LanguageScorer()
