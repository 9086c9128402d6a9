"""``{caption_length: {min_chars: 5}}``: bounds on the caption's (or `column`'s) characters and words.

Characters are code points (Python's ``len``); words are what Python's ``str.split()`` gives (as
DataComp's basic filter counts them): runs of characters between Unicode white space, which for
``str.split()`` also takes the four control separators U+001C-U+001F."""
from __future__ import annotations

from pathlib import Path

import polars as pl

from workbench.curation.rules.base import RuleKind
from workbench.errors import RecipeError

LENGTH_KEYS = ("min_chars", "max_chars", "min_words", "max_words")
# Python's str.split() separators: the regex engine's Unicode \s plus U+001C-U+001F (str.isspace() is true for
# them); tests/curation/test_datacomp_exact.py checks every code point against str.split()
WORD = r"[^\s\x1c-\x1f]+"


class CaptionLengthRule(RuleKind):
    key = "caption_length"
    settings = frozenset({"column"})

    @classmethod
    def check(cls, p):
        spec = p["caption_length"]
        if not isinstance(spec, dict) or not spec or set(spec) - set(LENGTH_KEYS):
            raise RecipeError(f"caption_length: give a mapping of {', '.join(LENGTH_KEYS)}, e.g. {{min_chars: 5}}")
        for k, v in spec.items():
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise RecipeError(f"caption_length: {k} must be a non-negative integer, got {v!r}")

    @classmethod
    def name(cls, p):
        spec = p["caption_length"]
        names = {"min_chars": "caption >= {} chars", "max_chars": "caption <= {} chars",
                 "min_words": "caption >= {} words", "max_words": "caption <= {} words"}
        return " & ".join(names[k].format(spec[k]) for k in LENGTH_KEYS if k in spec)

    @classmethod
    def columns(cls, p):
        return [p.get("column", "caption")]

    @classmethod
    def keep(cls, p, base: Path | None = None):
        c = pl.col(p.get("column", "caption"))
        spec = p["caption_length"]
        words = c.str.extract_all(WORD).list.len()
        ops = {"min_chars": c.str.len_chars() >= spec.get("min_chars", 0),
               "max_chars": c.str.len_chars() <= spec.get("max_chars", 0),
               "min_words": words >= spec.get("min_words", 0), "max_words": words <= spec.get("max_words", 0)}
        return pl.all_horizontal([ops[k] for k in LENGTH_KEYS if k in spec])
