"""``{caption_keywords: [watermark, "stock photo"]}``: captions naming (or not) a word of a list, a
word file (``{file: WORDS.txt}``, relative to the recipe's folder) or a named list (``{list: imagenet-1k}``)."""
from __future__ import annotations

import re
from pathlib import Path

from workbench.curation.rules.base import RuleKind, check_action, check_word_source, matches, strings


def keyword_words(p, base: Path | None = None) -> list[str]:
    v = p["caption_keywords"]
    if isinstance(v, dict):
        from workbench.curation.wordlists import words

        return words(v.get("list") or v["file"], base)
    return strings(v, "caption_keywords")


def keyword_pattern(p, base: Path | None = None) -> str:
    # longest first, so a phrase wins over a word it starts with
    alts = "|".join(re.escape(w) for w in sorted(set(keyword_words(p, base)), key=lambda w: (-len(w), w)))
    return rf"\b(?:{alts})\b" if p.get("whole_words", True) else f"(?:{alts})"


class CaptionKeywordsRule(RuleKind):
    key = "caption_keywords"
    settings = frozenset({"action", "case_sensitive", "whole_words", "column"})
    file_params = {"caption_keywords": ("mapping",)}

    @classmethod
    def check(cls, p):
        check_action(p, "caption_keywords")
        check_word_source(p["caption_keywords"], "caption_keywords",
                          "a list of words, or {file: WORDS.txt}, or {list: NAME} (named lists: imagenet-1k)")

    @classmethod
    def name(cls, p):
        v = p["caption_keywords"]
        verb = "has" if p.get("action", "drop") == "keep" else "lacks"
        if isinstance(v, dict):
            return f"caption {verb} a word of {v.get('list') or Path(v['file']).name}"
        words = strings(v, "caption_keywords")
        return f"caption {verb} {', '.join(words[:3])}{'...' if len(words) > 3 else ''}"

    @classmethod
    def columns(cls, p):
        return [p.get("column", "caption")]

    @classmethod
    def keep(cls, p, base: Path | None = None):
        return matches(p, keyword_pattern(p, base))
