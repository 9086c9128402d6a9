"""``{dedup: exact}`` (first of duplicate columns, in row order) / ``{dedup: semantic, threshold: 0.94}``
(one row kept per near-duplicate component of the embeddings)."""
from __future__ import annotations

from pathlib import Path

import polars as pl

from workbench.curation.rules.base import RuleKind, fmt, num
from workbench.errors import RecipeError
from workbench.io.schema import ROW


def semdup_column(p) -> str:
    return f"semdup_{p.get('embeddings', 'image')}_{fmt(float(p.get('threshold', 0.94)))}"


class DedupRule(RuleKind):
    key = "dedup"
    settings = frozenset({"columns", "threshold", "embeddings", "method"})
    scorer_names = ("semantic_dedup",)

    @classmethod
    def check(cls, p):
        if p["dedup"] == "exact":
            cols = p.get("columns", ["url", "caption"])
            if not isinstance(cols, list) or not cols or not all(isinstance(c, str) for c in cols):
                raise RecipeError("dedup exact: `columns` must be a non-empty list of column names")
            bad = set(p) - {"dedup", "columns"}
        elif p["dedup"] == "semantic":
            t = num(p.get("threshold", 0.94), "dedup semantic: threshold")
            if not 0 < t <= 1:
                raise RecipeError(f"dedup semantic: threshold must be in (0, 1], got {t}")
            if p.get("embeddings", "image") not in ("image", "text"):
                raise RecipeError("dedup semantic: embeddings must be image or text")
            if p.get("method", "auto") not in ("auto", "exact", "clustered"):
                raise RecipeError("dedup semantic: method must be auto, exact or clustered")
            bad = set(p) - {"dedup", "threshold", "embeddings", "method"}
        else:
            raise RecipeError(f"dedup: must be exact or semantic, got {p['dedup']!r}")
        if bad:
            raise RecipeError(f"dedup {p['dedup']}: unknown setting(s) {sorted(bad)}")

    @classmethod
    def name(cls, p):
        if p["dedup"] == "exact":
            return f"first of duplicate {' + '.join(p.get('columns', ['url', 'caption']))}"
        return f"first of near-duplicate {p.get('embeddings', 'image')}s (cos>={fmt(float(p.get('threshold', 0.94)))})"

    @classmethod
    def columns(cls, p):
        return p.get("columns", ["url", "caption"]) if p["dedup"] == "exact" else [semdup_column(p)]

    @classmethod
    def keep(cls, p, base: Path | None = None):
        if p["dedup"] == "exact":
            return pl.struct(p.get("columns", ["url", "caption"])).is_first_distinct()
        return pl.col(semdup_column(p)) == pl.col(ROW)

    @classmethod
    def score_requests(cls, p):
        if p["dedup"] == "exact":
            return []
        return [{"scorer": "semantic_dedup", "threshold": float(p.get("threshold", 0.94)),
                 "embeddings": p.get("embeddings", "image"), "method": p.get("method", "auto"),
                 "column": semdup_column(p)}]

    @classmethod
    def scorer(cls, request, collection, encoder=None, base=None, device="auto"):
        from workbench.scoring.scorers import SemanticDedupScorer

        return SemanticDedupScorer(request["column"], request["threshold"], request["embeddings"], request["method"])
