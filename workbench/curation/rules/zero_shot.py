"""``{zero_shot: laion400m-nsfw, drop_tags: [NSFW]}`` / ``{zero_shot: safety}``: a zero-shot prompt set's verdict."""
from __future__ import annotations

from pathlib import Path

import polars as pl

from workbench.curation.rules.base import RuleKind, fmt, num
from workbench.errors import RecipeError

ZERO_SHOT = {
    "laion400m-nsfw": {"columns": ["laion400m_tag", "laion400m_drop"]},
    "safety": {"columns": ["safety_margin", "safety_concept"]},
}
TAGS = ("UNLIKELY", "UNSURE", "NSFW")


class ZeroShotRule(RuleKind):
    key = "zero_shot"
    settings = frozenset({"drop_tags", "keep_flagged", "margin"})
    scorer_names = tuple(ZERO_SHOT)

    @classmethod
    def check(cls, p):
        if not isinstance(p["zero_shot"], str) or p["zero_shot"] not in ZERO_SHOT:
            raise RecipeError(f"zero_shot: unknown prompt set {p['zero_shot']!r} (known: {', '.join(ZERO_SHOT)})")
        if p["zero_shot"] == "laion400m-nsfw":
            tags = p.get("drop_tags", [])
            if not isinstance(tags, list) or not all(isinstance(t, str) and t in TAGS for t in tags):
                raise RecipeError(f"zero_shot laion400m-nsfw: drop_tags must be a list of {', '.join(TAGS)}")
            bad = set(p) - {"zero_shot", "drop_tags", "keep_flagged"}
        else:
            bad = set(p) - {"zero_shot", "margin"}
            if "margin" in p:
                num(p["margin"], "zero_shot safety: margin")
        if bad:
            raise RecipeError(f"zero_shot {p['zero_shot']}: unknown setting(s) {sorted(bad)}")

    @classmethod
    def name(cls, p):
        if p["zero_shot"] == "laion400m-nsfw":
            tags = p.get("drop_tags", [])
            what = "under-age/animal rule" if not p.get("keep_flagged") else ""
            if tags:
                what += (" + " if what else "") + "tags " + "/".join(tags)
            return f"LAION-400M NSFW: {what or 'nothing dropped'}"
        return f"safety concepts margin<={fmt(float(p.get('margin', 0.0)))}"

    @classmethod
    def columns(cls, p):
        return ZERO_SHOT[p["zero_shot"]]["columns"]

    @classmethod
    def keep(cls, p, base: Path | None = None):
        if p["zero_shot"] == "laion400m-nsfw":
            keep = ~pl.col("laion400m_tag").is_in(p.get("drop_tags", [])) & pl.col("laion400m_tag").is_not_null()
            if not p.get("keep_flagged", False):
                keep = keep & ~pl.col("laion400m_drop")
            return keep
        return pl.col("safety_margin") <= float(p.get("margin", 0.0))

    @classmethod
    def score_requests(cls, p):
        return [{"scorer": p["zero_shot"]}]

    @classmethod
    def scorer(cls, request, collection, encoder=None, base=None, device="auto"):
        from workbench.scoring.scorers import Laion400mScorer, SafetyScorer

        return Laion400mScorer(encoder) if request["scorer"] == "laion400m-nsfw" else SafetyScorer(encoder)

    @classmethod
    def needs_text_encoder(cls, request):
        return True
