"""``{language: en, min_confidence: 0.5}``: the caption's language (the metadata's ``language``
column, or fastText language ID computed offline).

``detector: gcld3`` asks Google's CLD3 instead (DataComp's LAION-2B baseline does), into the column
``language_gcld3``; it is refused when the ``gcld3`` module is missing, never replaced by fastText."""
from __future__ import annotations

from pathlib import Path

import polars as pl

from workbench.curation.rules.base import RuleKind, num, strings
from workbench.errors import RecipeError

DETECTORS = ("fasttext", "gcld3")


def _column(p) -> str:
    return "language_gcld3" if p.get("detector") == "gcld3" else "language"


class LanguageRule(RuleKind):
    key = "language"
    settings = frozenset({"min_confidence", "detector"})
    scorer_names = ("language", "language_gcld3")

    @classmethod
    def check(cls, p):
        strings(p["language"], "language")
        if "min_confidence" in p and not 0 <= num(p["min_confidence"], "language: min_confidence") <= 1:
            raise RecipeError("language: min_confidence must be in [0, 1]")
        if p.get("detector", "fasttext") not in DETECTORS:
            raise RecipeError(f"language: detector must be one of {', '.join(DETECTORS)}, got {p['detector']!r}")

    @classmethod
    def name(cls, p):
        by = " (gcld3)" if p.get("detector") == "gcld3" else ""
        return f"language in {strings(p['language'], 'language')}{by}"

    @classmethod
    def columns(cls, p):
        col = _column(p)
        return [col] + ([col + "_confidence"] if "min_confidence" in p else [])

    @classmethod
    def keep(cls, p, base: Path | None = None):
        col = _column(p)
        keep = pl.col(col).is_in(strings(p["language"], "language"))
        if "min_confidence" in p:
            keep = keep & (pl.col(col + "_confidence") >= float(p["min_confidence"]))
        return keep.fill_null(False)

    @classmethod
    def score_requests(cls, p):
        return [{"scorer": "language_gcld3"}] if p.get("detector") == "gcld3" else [{"scorer": "language"}]

    @classmethod
    def scorer(cls, request, collection, encoder=None, base=None, device="auto"):
        if request["scorer"] == "language_gcld3":
            from workbench.scoring.scorers import Gcld3LanguageScorer

            return Gcld3LanguageScorer()
        if "language" in collection.metadata.collect_schema().names():
            return None  # the metadata's own language column
        from workbench.scoring.scorers import LanguageScorer

        return LanguageScorer()
