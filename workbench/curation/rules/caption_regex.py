"""``{caption_regex: "<[^>]+>"}``: captions (or `column`) matching a regular expression are removed
(``action: keep``: only they are kept); case-insensitive unless ``case_sensitive: true``."""
from __future__ import annotations

import re
from pathlib import Path

from workbench.curation.rules.base import RuleKind, check_action, matches
from workbench.errors import RecipeError


class CaptionRegexRule(RuleKind):
    key = "caption_regex"
    settings = frozenset({"action", "case_sensitive", "column"})

    @classmethod
    def check(cls, p):
        check_action(p, "caption_regex")
        if not isinstance(p["caption_regex"], str) or not p["caption_regex"]:
            raise RecipeError("caption_regex: needs a pattern")
        try:
            re.compile(p["caption_regex"])
        except re.error as exc:
            raise RecipeError(f"caption_regex: invalid pattern {p['caption_regex']!r} ({exc})") from None

    @classmethod
    def name(cls, p):
        return f"caption {'matches' if p.get('action', 'drop') == 'keep' else 'does not match'} /{p['caption_regex']}/"

    @classmethod
    def columns(cls, p):
        return [p.get("column", "caption")]

    @classmethod
    def keep(cls, p, base: Path | None = None):
        return matches(p, p["caption_regex"])
