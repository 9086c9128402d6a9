"""The base class of a rule kind, and the helpers kinds share.

A *rule kind* is one class (a subclass of :class:`RuleKind`) that says everything about its kind:
the key a rule starts with (and its aliases), the other settings it takes and how they are checked,
the rule's display name, the columns it reads, the score columns that must be computed for it (its
*score requests*) and the scorers that compute them, its keep expression, whether it is a threshold
(and on which column), whether it needs a text tower, and which settings name files. Everything
else (:class:`~workbench.curation.recipe.Rule`, :class:`~workbench.curation.recipe.Recipe`,
:func:`~workbench.curation.recipe.evaluate`, :class:`~workbench.curation.live.Live`,
:func:`~workbench.curation.apply.apply`) asks the class; the registry is
:data:`workbench.curation.rules.KINDS`.

Every method is a classmethod taking the rule's settings ``p`` (the mapping as written in the
recipe, without ``name``); a kind holds no state. This module never imports torch.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import polars as pl

from workbench.errors import RecipeError

BOUNDS = {"min": ">=", "max": "<=", "above": ">", "below": "<"}


class RuleKind:
    """One kind of rule. A subclass sets :attr:`key` and overrides :meth:`check`, :meth:`name`,
    :meth:`columns` and :meth:`keep`; a kind that needs computed scores also overrides
    :meth:`score_requests` and :meth:`scorer` and lists :attr:`scorer_names`."""

    key: str = ""  # the key that names the kind (a rule's first key naming a kind decides it)
    aliases: tuple[str, ...] = ()  # other keys that name the kind (e.g. prompt_embedding)
    settings: frozenset[str] = frozenset()  # the other keys a rule of this kind may hold
    threshold: bool = False  # min/max/above/below on threshold_column(p): Live's sliders, warnings
    rankable: bool = False  # its column is a score of each row the gallery can show the top of
    scorer_names: tuple[str, ...] = ()  # the `scorer` values of its score requests
    # key -> the forms in which its value names files relative to the recipe's folder, which
    # Recipe.save rewrites: "path" (a path with a suffix, or a list of paths), "mapping" ({file: PATH})
    file_params: dict[str, tuple[str, ...]] = {}

    @classmethod
    def allowed(cls) -> set[str]:
        """Every key a rule of this kind may hold (besides ``name``)."""
        return {cls.key, *cls.aliases, *cls.settings}

    @classmethod
    def check(cls, p: dict) -> None:
        """Raise :class:`RecipeError` (one line) when the settings are not valid."""

    @classmethod
    def name(cls, p: dict) -> str:
        """The rule's generated display name (unique names are the recipe's business)."""
        raise NotImplementedError

    @classmethod
    def columns(cls, p: dict) -> list[str]:
        """The columns the keep expression reads (metadata or score columns)."""
        raise NotImplementedError

    @classmethod
    def keep(cls, p: dict, base: Path | None = None) -> pl.Expr:
        """True where a row passes (a null result counts as failing). `base`: the folder relative
        files resolve against (the recipe file's)."""
        raise NotImplementedError

    @classmethod
    def score_requests(cls, p: dict) -> list[dict]:
        """The score columns that must be computed: each a mapping with ``scorer`` (one of
        :attr:`scorer_names`) and usually ``column``. Empty for rules over metadata."""
        return []

    @classmethod
    def scorer(cls, request: dict, collection, encoder=None, base: Path | None = None, device: str = "auto"):
        """The scorer that computes `request` on `collection`, or None when nothing needs computing
        (e.g. the metadata already has the column)."""
        raise RecipeError(f"no scorer for {request['scorer']!r}")

    @classmethod
    def needs_text_encoder(cls, request: dict) -> bool:
        """Whether computing `request` embeds text (and so needs a text tower)."""
        return False

    @classmethod
    def threshold_column(cls, p: dict) -> str | None:
        """The numeric column the thresholds compare (threshold kinds; its first column), else None."""
        return cls.columns(p)[0] if cls.threshold else None

    @classmethod
    def slider_column(cls, p: dict) -> str | None:
        """The column of a rule whose only conditions are thresholds (Live moves them), else None."""
        return cls.threshold_column(p)

    @classmethod
    def relocate(cls, p: dict, base: Path, dest: Path) -> dict:
        """`p` with its relative file paths (:attr:`file_params`) that exist under `base` rewritten
        relative to `dest` (the folder a recipe is saved to)."""
        out = dict(p)
        for key, forms in cls.file_params.items():
            v = out.get(key)
            if "path" in forms and isinstance(v, str):
                if Path(v).suffix and not Path(v).is_absolute() and (base / v).exists():
                    out[key] = os.path.relpath(base / v, dest)
            elif "path" in forms and isinstance(v, list):
                out[key] = [os.path.relpath(base / f, dest) if not Path(f).is_absolute() and (base / f).exists()
                            else f for f in v]
            elif "mapping" in forms and isinstance(v, dict) and "file" in v:
                if not Path(v["file"]).is_absolute() and (base / v["file"]).exists():
                    out[key] = {"file": os.path.relpath(base / v["file"], dest)}
        return out


# -- helpers kinds share -----------------------------------------------------------------------------
def num(v, key, where=None) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise RecipeError(f"{key} must be a finite number, got {v!r}", where)
    return float(v)


def fmt(v: float) -> str:
    return f"{v:g}"


def digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:10]


def check_bounds(p, what: str, required: bool = True, extra: tuple = ()) -> None:
    bounds = [k for k in BOUNDS if k in p]
    if required and not bounds and not any(k in p for k in extra):
        raise RecipeError(f"{what}: needs a threshold: one of {', '.join(list(BOUNDS) + list(extra))}")
    for k in bounds:
        num(p[k], f"{what}: {k}")


def bounded(c: pl.Expr, p) -> list[pl.Expr]:
    """Threshold conditions on `c`. A NaN fails every bound (polars orders NaN above every number,
    so `NaN >= t` alone would keep it), as a null does: a missing score never passes a rule."""
    ops = {"min": lambda v: c >= v, "max": lambda v: c <= v, "above": lambda v: c > v, "below": lambda v: c < v}
    conds = [ops[k](float(p[k])) for k in BOUNDS if k in p]
    if conds:
        conds.append(c.cast(pl.Float64, strict=False).is_not_nan())
    return conds


def bounds_name(label: str, p, sep: str = "") -> str:
    return " & ".join(f"{label}{sep}{op}{sep}{fmt(float(p[k]))}" for k, op in BOUNDS.items() if k in p)


def strings(v, what: str) -> list[str]:
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not v or not all(isinstance(t, str) and t.strip() for t in v):
        raise RecipeError(f"{what} must be a non-empty string or a list of them")
    return v


def check_action(p, kind: str) -> None:
    if p.get("action", "drop") not in ("drop", "keep"):
        raise RecipeError(f"{kind}: action must be drop or keep, got {p['action']!r}")


def matches(p, pattern: str) -> pl.Expr:
    """Caption (or `column`) matches `pattern`: kept when ``action: keep``, else removed."""
    flags = "" if p.get("case_sensitive") else "(?i)"
    hit = pl.col(p.get("column", "caption")).str.contains(flags + pattern)
    return ~hit if p.get("action", "drop") == "drop" else hit


def check_word_source(v, what: str, usage: str) -> None:
    """A list of strings, or {file: WORDS.txt}, or {list: NAME} (a named list of workbench.curation.wordlists)."""
    if not isinstance(v, dict):
        strings(v, what)
        return
    if len(v) != 1 or not set(v) <= {"file", "list"} or not isinstance(next(iter(v.values())), str):
        raise RecipeError(f"{what}: {usage}")
    if "list" in v:
        from workbench.curation.wordlists import NAMED

        if v["list"] not in NAMED:
            raise RecipeError(f"{what}: unknown list {v['list']!r} (named lists: {', '.join(NAMED)})")


def check_int(p, key: str, low: int, what: str) -> None:
    if key in p and (not isinstance(p[key], int) or isinstance(p[key], bool) or p[key] < low):
        raise RecipeError(f"{what}: {key} must be an integer >= {low}, got {p[key]!r}")


def check_rows(p, key: str) -> None:
    """`p[key]` is a list of global row ids (integers >= 0): ``drop_rows`` and ``keep_rows``."""
    rows = p[key]
    if not isinstance(rows, list) or not all(isinstance(r, int) and not isinstance(r, bool) and r >= 0 for r in rows):
        raise RecipeError(f"{key}: must be a list of global row ids (integers >= 0)")
