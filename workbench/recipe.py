"""Recipes: declarative rules over metadata and score columns, compiled to polars expressions.

A recipe is a list of rules. The key a rule starts with names its kind; each rule keeps or removes
rows by one criterion and has a stable, unique name (generated, or given with ``name:``). Applying a
recipe gives a :class:`Selection` with the *first* rule that removed each row (its reason), counts
per rule (alone, and after the rules before it) and pairwise overlaps.

Recipe files are YAML or JSON::

    name: my-subset
    rules:
      - {caption_length: {min_chars: 5}}
      - {dedup: exact}                                   # first (url, caption) in row order is kept
      - {column: similarity, min: 0.28}
      - {column: punsafe, below: 0.5}
      - {prompt: "a watermark", max: 0.25}              # cosine of the image embedding with the prompt
      - {prompt_embedding: watermark.npy, max: 0.25}     # the same with a stored (d,) vector
      - {head: aesthetic-v2-l14, min: 5}                 # a detector head (name or file)
      - {zero_shot: laion400m-nsfw, drop_tags: [NSFW]}  # LAION-400M's 35-prompt rule
      - {dedup: semantic, threshold: 0.94}               # one row kept per near-duplicate component
      - {top_fraction: 0.3, by: similarity}
      - {caption_keywords: [watermark, "stock photo"]}
      - {drop_rows: [12, 97]}

A missing value (null) fails every rule: a row without a similarity is not kept by a similarity
rule, nor a row without a caption by a caption rule, nor a row whose embedding is NaN by a prompt
rule. Thresholds: ``min`` (>=), ``max`` (<=), ``above`` (>), ``below`` (<).

Rules that need scores (prompt, head, zero_shot, semantic dedup, language, and ``similarity`` where
the metadata lacks it) name a *score request*; :mod:`workbench.scoring` computes those columns
(cached beside the collection) before the rules are evaluated. This module never imports torch.

Limits (a recipe is a short hand-written file; anything past these is refused with one line, in
well under a second, before any work):

- a recipe file is at most 1 MiB (:data:`MAX_RECIPE_BYTES`; 10,000 one-line rules take ~0.5 MiB)
  and UTF-8 text;
- at most 10,000 rules (:data:`MAX_RULES`): a row's reason is an int16 rule index, and evaluating
  10,000 threshold rules over a million rows already holds ~1.25 GB of fail bits;
- collections nest at most 16 deep (:data:`MAX_DEPTH`; a recipe needs 4);
- YAML aliases may only repeat a single value (``min: &t 0.28`` ... ``max: *t``); an alias of a
  mapping or list (``<<: *base``, the "billion laughs" expansion) is refused, since each such
  alias can multiply the size of what it names.

Evaluation costs O(rules x rows): one polars pass computes every rule's keep column, then each
rule updates the first reason and its own count once. Pairwise overlaps (k x k) are computed only
when asked for (:attr:`Selection.overlaps`, :meth:`Selection.overlap_table`), from packed fail bits.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from .errors import RecipeError
from .schema import ROW

_BOUNDS = {"min": ">=", "max": "<=", "above": ">", "below": "<"}
MAX_RECIPE_BYTES = 1 << 20  # 1 MiB
MAX_RULES = 10_000  # < 32,767: Selection.reason is int16
MAX_DEPTH = 16  # nesting of mappings/lists in a recipe file (a recipe needs 4)
# -- rules ------------------------------------------------------------------------------------------
def _num(v, key, where=None):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise RecipeError(f"{key} must be a finite number, got {v!r}", where)
    return float(v)


def _fmt(v: float) -> str:
    return f"{v:g}"


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:10]


def _check_bounds(p, what: str, required: bool = True, extra: tuple = ()):
    bounds = [k for k in _BOUNDS if k in p]
    if required and not bounds and not any(k in p for k in extra):
        raise RecipeError(f"{what}: needs a threshold: one of {', '.join(list(_BOUNDS) + list(extra))}")
    for k in bounds:
        _num(p[k], f"{what}: {k}")


def _bounded(c: pl.Expr, p) -> list[pl.Expr]:
    """Threshold conditions on `c`. A NaN fails every bound (polars orders NaN above every number,
    so `NaN >= t` alone would keep it), as a null does: a missing score never passes a rule."""
    ops = {"min": lambda v: c >= v, "max": lambda v: c <= v, "above": lambda v: c > v, "below": lambda v: c < v}
    conds = [ops[k](float(p[k])) for k in _BOUNDS if k in p]
    if conds:
        conds.append(c.cast(pl.Float64, strict=False).is_not_nan())
    return conds


def _bounds_name(label: str, p, sep: str = "") -> str:
    return " & ".join(f"{label}{sep}{op}{sep}{_fmt(float(p[k]))}" for k, op in _BOUNDS.items() if k in p)


def _strings(v, what: str) -> list[str]:
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not v or not all(isinstance(t, str) and t.strip() for t in v):
        raise RecipeError(f"{what} must be a non-empty string or a list of them")
    return v


# column ------------------------------------------------------------------------------------------
def _check_column(p):
    if not isinstance(p["column"], str) or not p["column"]:
        raise RecipeError("`column:` needs a column name")
    _check_bounds(p, f"column {p['column']}", extra=("in", "not_in"))
    for k in ("in", "not_in"):
        if k in p and not isinstance(p[k], list):
            raise RecipeError(f"column {p['column']}: `{k}` must be a list")
        kinds = {"number" if isinstance(v, (int, float)) and not isinstance(v, bool) else type(v).__name__
                 for v in p.get(k, []) if v is not None}
        if not kinds <= {"str", "number", "bool"} or len(kinds) > 1:
            raise RecipeError(f"column {p['column']}: `{k}` must list values of one type (strings, numbers or "
                              f"booleans), got {p[k]!r:.80}")


def _keep_column(p) -> pl.Expr:
    c = pl.col(p["column"])
    conds = _bounded(c, p)
    if "in" in p:
        conds.append(c.is_in(p["in"]))
    if "not_in" in p:
        conds.append(~c.is_in(p["not_in"]) & c.is_not_null())
    return pl.all_horizontal(conds)


def _name_column(p) -> str:
    parts = [_bounds_name(p["column"], p)] if any(k in p for k in _BOUNDS) else []
    if "in" in p:
        parts.append(f"{p['column']} in {p['in']}")
    if "not_in" in p:
        parts.append(f"{p['column']} not in {p['not_in']}")
    return " & ".join(parts)


# prompt ------------------------------------------------------------------------------------------
def _check_prompt(p):
    if "prompt" in p and "prompt_embedding" in p:
        raise RecipeError("a prompt rule takes `prompt:` (text) or `prompt_embedding:` (a .npy file), not both")
    if "prompt" in p:
        _strings(p["prompt"], "prompt")
    else:
        _strings(p["prompt_embedding"], "prompt_embedding")
    if "negatives" in p:
        _strings(p["negatives"], "negatives")
    if p.get("reduce", "max") not in ("max", "mean"):
        raise RecipeError(f"prompt: reduce must be max or mean, got {p['reduce']!r}")
    if p.get("embeddings", "image") not in ("image", "text"):
        raise RecipeError(f"prompt: embeddings must be image or text, got {p['embeddings']!r}")
    _check_bounds(p, "prompt")


def _prompt_request(p) -> dict:
    req = {"scorer": "prompt", "reduce": p.get("reduce", "max"), "embeddings": p.get("embeddings", "image")}
    if "prompt" in p:
        req["texts"] = _strings(p["prompt"], "prompt")
    else:
        req["files"] = _strings(p["prompt_embedding"], "prompt_embedding")
    if "negatives" in p:
        req["negatives"] = _strings(p["negatives"], "negatives")
    return req


def _prompt_column(p) -> str:
    return "prompt_" + _digest(_prompt_request(p))


def _name_prompt(p) -> str:
    v = p.get("prompt", p.get("prompt_embedding"))
    v = v if isinstance(v, list) else [v]
    label = ", ".join(repr(t) for t in v[:2]) + (f" +{len(v) - 2}" if len(v) > 2 else "")
    label = label if "prompt" in p else "embedding " + label
    if "negatives" in p:
        label += " - " + ", ".join(repr(t) for t in _strings(p["negatives"], "negatives")[:2])
    return _bounds_name(f"prompt {label}", p, " ")


# head --------------------------------------------------------------------------------------------
def _check_head(p):
    if not isinstance(p["head"], str) or not p["head"]:
        raise RecipeError("`head:` needs a head name (e.g. nsfw-l14) or a head file")
    _check_bounds(p, f"head {p['head']}")


def head_column(p) -> str:
    """The score column a head rule reads (``head_`` + the head's name or file stem)."""
    h = p["head"]
    stem = Path(h).stem if ("/" in h or "." in h) else h
    return "head_" + re.sub(r"[^0-9A-Za-z_+-]+", "_", stem)


# zero-shot prompt sets ---------------------------------------------------------------------------
ZERO_SHOT = {
    "laion400m-nsfw": {"columns": ["laion400m_tag", "laion400m_drop"]},
    "safety": {"columns": ["safety_margin", "safety_concept"]},
}
_TAGS = ("UNLIKELY", "UNSURE", "NSFW")


def _check_zero_shot(p):
    if not isinstance(p["zero_shot"], str) or p["zero_shot"] not in ZERO_SHOT:
        raise RecipeError(f"zero_shot: unknown prompt set {p['zero_shot']!r} (known: {', '.join(ZERO_SHOT)})")
    if p["zero_shot"] == "laion400m-nsfw":
        tags = p.get("drop_tags", [])
        if not isinstance(tags, list) or not all(isinstance(t, str) and t in _TAGS for t in tags):
            raise RecipeError(f"zero_shot laion400m-nsfw: drop_tags must be a list of {', '.join(_TAGS)}")
        bad = set(p) - {"zero_shot", "drop_tags", "keep_flagged"}
    else:
        bad = set(p) - {"zero_shot", "margin"}
        if "margin" in p:
            _num(p["margin"], "zero_shot safety: margin")
    if bad:
        raise RecipeError(f"zero_shot {p['zero_shot']}: unknown setting(s) {sorted(bad)}")


def _keep_zero_shot(p) -> pl.Expr:
    if p["zero_shot"] == "laion400m-nsfw":
        keep = ~pl.col("laion400m_tag").is_in(p.get("drop_tags", [])) & pl.col("laion400m_tag").is_not_null()
        if not p.get("keep_flagged", False):
            keep = keep & ~pl.col("laion400m_drop")
        return keep
    return pl.col("safety_margin") <= float(p.get("margin", 0.0))


def _name_zero_shot(p) -> str:
    if p["zero_shot"] == "laion400m-nsfw":
        tags = p.get("drop_tags", [])
        what = "under-age/animal rule" if not p.get("keep_flagged") else ""
        if tags:
            what += (" + " if what else "") + "tags " + "/".join(tags)
        return f"LAION-400M NSFW: {what or 'nothing dropped'}"
    return f"safety concepts margin<={_fmt(float(p.get('margin', 0.0)))}"


# captions, sizes, language -----------------------------------------------------------------------
_LENGTH_KEYS = ("min_chars", "max_chars", "min_words", "max_words")


def _check_caption_length(p):
    spec = p["caption_length"]
    if not isinstance(spec, dict) or not spec or set(spec) - set(_LENGTH_KEYS):
        raise RecipeError(f"caption_length: give a mapping of {', '.join(_LENGTH_KEYS)}, e.g. {{min_chars: 5}}")
    for k, v in spec.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise RecipeError(f"caption_length: {k} must be a non-negative integer, got {v!r}")


def _keep_caption_length(p) -> pl.Expr:
    c = pl.col(p.get("column", "caption"))
    spec = p["caption_length"]
    words = c.str.extract_all(r"\S+").list.len()
    ops = {"min_chars": c.str.len_chars() >= spec.get("min_chars", 0),
           "max_chars": c.str.len_chars() <= spec.get("max_chars", 0),
           "min_words": words >= spec.get("min_words", 0), "max_words": words <= spec.get("max_words", 0)}
    return pl.all_horizontal([ops[k] for k in _LENGTH_KEYS if k in spec])


def _name_caption_length(p) -> str:
    spec = p["caption_length"]
    names = {"min_chars": "caption >= {} chars", "max_chars": "caption <= {} chars",
             "min_words": "caption >= {} words", "max_words": "caption <= {} words"}
    return " & ".join(names[k].format(spec[k]) for k in _LENGTH_KEYS if k in spec)


def _check_action(p, kind):
    if p.get("action", "drop") not in ("drop", "keep"):
        raise RecipeError(f"{kind}: action must be drop or keep, got {p['action']!r}")


def _check_regex(p):
    _check_action(p, "caption_regex")
    if not isinstance(p["caption_regex"], str) or not p["caption_regex"]:
        raise RecipeError("caption_regex: needs a pattern")
    try:
        re.compile(p["caption_regex"])
    except re.error as exc:
        raise RecipeError(f"caption_regex: invalid pattern {p['caption_regex']!r} ({exc})") from None


def _matches(p, pattern: str) -> pl.Expr:
    flags = "" if p.get("case_sensitive") else "(?i)"
    hit = pl.col(p.get("column", "caption")).str.contains(flags + pattern)
    return ~hit if p.get("action", "drop") == "drop" else hit


def _check_word_source(v, what: str, usage: str) -> None:
    """A list of strings, or {file: WORDS.txt}, or {list: NAME} (a named list of workbench.wordlists)."""
    if not isinstance(v, dict):
        _strings(v, what)
        return
    if len(v) != 1 or not set(v) <= {"file", "list"} or not isinstance(next(iter(v.values())), str):
        raise RecipeError(f"{what}: {usage}")
    if "list" in v:
        from .wordlists import NAMED

        if v["list"] not in NAMED:
            raise RecipeError(f"{what}: unknown list {v['list']!r} (named lists: {', '.join(NAMED)})")


def _check_int(p, key: str, low: int, what: str) -> None:
    if key in p and (not isinstance(p[key], int) or isinstance(p[key], bool) or p[key] < low):
        raise RecipeError(f"{what}: {key} must be an integer >= {low}, got {p[key]!r}")


def _check_keywords(p):
    _check_action(p, "caption_keywords")
    _check_word_source(p["caption_keywords"], "caption_keywords",
                       "a list of words, or {file: WORDS.txt}, or {list: NAME} (named lists: imagenet-1k)")


def _keyword_words(p, base: Path | None = None) -> list[str]:
    v = p["caption_keywords"]
    if isinstance(v, dict):
        from .wordlists import words

        return words(v.get("list") or v["file"], base)
    return _strings(v, "caption_keywords")


def _keyword_pattern(p, base: Path | None = None) -> str:
    # longest first, so a phrase wins over a word it starts with
    alts = "|".join(re.escape(w) for w in sorted(set(_keyword_words(p, base)), key=lambda w: (-len(w), w)))
    return rf"\b(?:{alts})\b" if p.get("whole_words", True) else f"(?:{alts})"


def _name_keywords(p) -> str:
    v = p["caption_keywords"]
    verb = "has" if p.get("action", "drop") == "keep" else "lacks"
    if isinstance(v, dict):
        return f"caption {verb} a word of {v.get('list') or Path(v['file']).name}"
    words = _strings(v, "caption_keywords")
    return f"caption {verb} {', '.join(words[:3])}{'...' if len(words) > 3 else ''}"


_SIZE_KEYS = ("min_side", "min_width", "min_height", "max_aspect")


def _check_size(p):
    spec = p["image_size"]
    if not isinstance(spec, dict) or not spec or set(spec) - set(_SIZE_KEYS):
        raise RecipeError(f"image_size: give a mapping of {', '.join(_SIZE_KEYS)}, e.g. {{min_side: 200}}")
    for k, v in spec.items():
        if _num(v, f"image_size: {k}") <= 0:
            raise RecipeError(f"image_size: {k} must be > 0")


def _keep_size(p) -> pl.Expr:
    spec = p["image_size"]
    w, h = pl.col("width").cast(pl.Float64), pl.col("height").cast(pl.Float64)
    ops = {"min_side": lambda v: pl.min_horizontal(w, h) >= v, "min_width": lambda v: w >= v,
           "min_height": lambda v: h >= v,
           "max_aspect": lambda v: pl.max_horizontal(w, h) / pl.min_horizontal(w, h) <= v}
    return pl.all_horizontal([ops[k](float(spec[k])) for k in _SIZE_KEYS if k in spec])


def _name_size(p) -> str:
    names = {"min_side": "min side >= {}", "min_width": "width >= {}", "min_height": "height >= {}",
             "max_aspect": "aspect <= {}"}
    return " & ".join(names[k].format(_fmt(float(p["image_size"][k]))) for k in _SIZE_KEYS if k in p["image_size"])


def _check_language(p):
    _strings(p["language"], "language")
    if "min_confidence" in p and not 0 <= _num(p["min_confidence"], "language: min_confidence") <= 1:
        raise RecipeError("language: min_confidence must be in [0, 1]")


def _keep_language(p) -> pl.Expr:
    keep = pl.col("language").is_in(_strings(p["language"], "language"))
    if "min_confidence" in p:
        keep = keep & (pl.col("language_confidence") >= float(p["min_confidence"]))
    return keep


# dedup, top fraction, row lists ------------------------------------------------------------------
def _check_dedup(p):
    if p["dedup"] == "exact":
        cols = p.get("columns", ["url", "caption"])
        if not isinstance(cols, list) or not cols or not all(isinstance(c, str) for c in cols):
            raise RecipeError("dedup exact: `columns` must be a non-empty list of column names")
        bad = set(p) - {"dedup", "columns"}
    elif p["dedup"] == "semantic":
        t = _num(p.get("threshold", 0.94), "dedup semantic: threshold")
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


def _semdup_column(p) -> str:
    return f"semdup_{p.get('embeddings', 'image')}_{_fmt(float(p.get('threshold', 0.94)))}"


def _keep_dedup(p) -> pl.Expr:
    if p["dedup"] == "exact":
        return pl.struct(p.get("columns", ["url", "caption"])).is_first_distinct()
    return pl.col(_semdup_column(p)) == pl.col(ROW)


def _name_dedup(p) -> str:
    if p["dedup"] == "exact":
        return f"first of duplicate {' + '.join(p.get('columns', ['url', 'caption']))}"
    return f"first of near-duplicate {p.get('embeddings', 'image')}s (cos>={_fmt(float(p.get('threshold', 0.94)))})"


def _check_top(p):
    if not isinstance(p.get("by"), str):
        raise RecipeError("top_fraction: needs `by: COLUMN`")
    f = _num(p["top_fraction"], "top_fraction")
    if not 0 < f <= 1:
        raise RecipeError(f"top_fraction must be in (0, 1], got {f}")


def _keep_top(p) -> pl.Expr:
    c = pl.col(p["by"])
    # ordinal rank among the finite values: ties go to the earlier row (frames are in row order), so the
    # result is deterministic; null, NaN, +inf and -inf are never kept nor counted (as `workbench sample`)
    finite = c.cast(pl.Float64).is_finite().fill_null(False)
    k = (finite.sum() * float(p["top_fraction"])).ceil()
    return pl.when(finite).then(c).rank("ordinal", descending=True) <= k


# image clusters near a reference (DataComp's image-based filter) ------------------------------------
def _check_image_clusters(p):
    _check_word_source(p["image_clusters"], "image_clusters",
                       "a reference: REF.npy (embeddings), a list of prompts, or {list: imagenet-1k} / "
                       "{file: CLASSES.txt} (class names put into `template`)")
    _check_int(p, "k", 2, "image_clusters")
    _check_int(p, "sample", 2, "image_clusters")
    _check_int(p, "seed", 0, "image_clusters")
    if "template" in p and (not isinstance(p["template"], str) or "{}" not in p["template"]):
        raise RecipeError("image_clusters: template must be a string holding {} (e.g. 'a photo of a {}.')")


def _cluster_request(p) -> dict:
    v = p["image_clusters"]
    req = {"scorer": "image_clusters", "k": p.get("k"), "sample": p.get("sample"), "seed": p.get("seed", 0)}
    if isinstance(v, dict):
        req.update(names=v.get("list") or v["file"], template=p.get("template", "a photo of a {}."))
    else:
        v = _strings(v, "image_clusters")
        if all(x.endswith(".npy") for x in v):
            req["files"] = v
        else:
            req["texts"] = v
    return req


def _cluster_column(p) -> str:
    return "imgclust_" + _digest(_cluster_request(p))


def _name_image_clusters(p) -> str:
    v = p["image_clusters"]
    what = (v.get("list") or Path(v["file"]).name) if isinstance(v, dict) else (
        ", ".join(_strings(v, "image_clusters")[:2]) + ("..." if len(_strings(v, "image_clusters")) > 2 else ""))
    return f"image cluster near {what}" + (f" (k={p['k']})" if "k" in p else "")


def _check_rows(p, key):
    rows = p[key]
    if not isinstance(rows, list) or not all(isinstance(r, int) and not isinstance(r, bool) and r >= 0 for r in rows):
        raise RecipeError(f"{key}: must be a list of global row ids (integers >= 0)")


def _spec(key, params, check, keep, name, columns, score=None, aliases=()):
    return dict(key=key, params=set(params) | {key}, check=check, keep=keep, name=name, columns=columns,
                score=score or (lambda p: []), aliases=aliases)


# kind -> its spec. A rule is a mapping whose kind key (the first key below it contains) names it.
RULES: dict[str, dict] = {
    "column": _spec("column", {"min", "max", "above", "below", "in", "not_in"}, _check_column, _keep_column,
                    _name_column, lambda p: [p["column"]]),
    "prompt": _spec("prompt", {"prompt_embedding", "negatives", "reduce", "embeddings", *_BOUNDS}, _check_prompt,
                    lambda p: pl.all_horizontal(_bounded(pl.col(_prompt_column(p)), p)), _name_prompt,
                    lambda p: [_prompt_column(p)],
                    score=lambda p: [{**_prompt_request(p), "column": _prompt_column(p)}], aliases=("prompt_embedding",)),
    "head": _spec("head", set(_BOUNDS), _check_head, lambda p: pl.all_horizontal(_bounded(pl.col(head_column(p)), p)),
                  lambda p: _bounds_name(p["head"], p, " "),
                  lambda p: [head_column(p)],
                  score=lambda p: [{"scorer": "head", "head": p["head"], "column": head_column(p)}]),
    "zero_shot": _spec("zero_shot", {"drop_tags", "keep_flagged", "margin"}, _check_zero_shot, _keep_zero_shot,
                       _name_zero_shot, lambda p: ZERO_SHOT[p["zero_shot"]]["columns"],
                       score=lambda p: [{"scorer": p["zero_shot"]}]),
    "dedup": _spec("dedup", {"columns", "threshold", "embeddings", "method"}, _check_dedup, _keep_dedup, _name_dedup,
                   lambda p: p.get("columns", ["url", "caption"]) if p["dedup"] == "exact" else [_semdup_column(p)],
                   score=lambda p: [] if p["dedup"] == "exact" else [{
                       "scorer": "semantic_dedup", "threshold": float(p.get("threshold", 0.94)),
                       "embeddings": p.get("embeddings", "image"), "method": p.get("method", "auto"),
                       "column": _semdup_column(p)}]),
    "top_fraction": _spec("top_fraction", {"by"}, _check_top, _keep_top,
                          lambda p: f"top {_fmt(100 * float(p['top_fraction']))}% by {p['by']}", lambda p: [p["by"]]),
    "caption_length": _spec("caption_length", {"column"}, _check_caption_length, _keep_caption_length,
                            _name_caption_length, lambda p: [p.get("column", "caption")]),
    "caption_regex": _spec("caption_regex", {"action", "case_sensitive", "column"}, _check_regex,
                           lambda p: _matches(p, p["caption_regex"]),
                           lambda p: f"caption {'matches' if p.get('action', 'drop') == 'keep' else 'does not match'} /{p['caption_regex']}/",
                           lambda p: [p.get("column", "caption")]),
    "caption_keywords": _spec("caption_keywords", {"action", "case_sensitive", "whole_words", "column"}, _check_keywords,
                              lambda p, base=None: _matches(p, _keyword_pattern(p, base)), _name_keywords,
                              lambda p: [p.get("column", "caption")]),
    "image_size": _spec("image_size", set(), _check_size, _keep_size, _name_size, lambda p: ["width", "height"]),
    "language": _spec("language", {"min_confidence"}, _check_language, _keep_language,
                      lambda p: f"language in {_strings(p['language'], 'language')}",
                      lambda p: ["language"] + (["language_confidence"] if "min_confidence" in p else []),
                      score=lambda p: [{"scorer": "language"}]),
    "image_clusters": _spec("image_clusters", {"k", "sample", "seed", "template"}, _check_image_clusters,
                            lambda p: pl.col(_cluster_column(p) + "_near"), _name_image_clusters,
                            lambda p: [_cluster_column(p), _cluster_column(p) + "_near"],
                            score=lambda p: [{**_cluster_request(p), "column": _cluster_column(p)}]),
    "drop_rows": _spec("drop_rows", set(), lambda p: _check_rows(p, "drop_rows"),
                       lambda p: ~pl.col(ROW).is_in(p["drop_rows"]),
                       lambda p: f"drop {len(p['drop_rows'])} listed rows", lambda p: [ROW]),
    "keep_rows": _spec("keep_rows", set(), lambda p: _check_rows(p, "keep_rows"),
                       lambda p: pl.col(ROW).is_in(p["keep_rows"]),
                       lambda p: f"keep only {len(p['keep_rows'])} listed rows", lambda p: [ROW]),
}
_KIND_OF = {k: kind for kind, spec in RULES.items() for k in (spec["key"], *spec["aliases"])}
_USES_BASE = {"caption_keywords"}  # kinds whose keep expression reads a file


def rule_kind(d: dict) -> str:
    """The kind of a rule mapping: the first of its keys that names a kind."""
    kinds = [_KIND_OF[k] for k in d if k in _KIND_OF]
    if not kinds:
        raise RecipeError(f"a rule names its kind by its first key: one of {', '.join(sorted(_KIND_OF))}; "
                          f"got keys {sorted(map(str, d))}")
    if len(set(kinds)) > 1:
        raise RecipeError(f"a rule has one kind; this one names {sorted(set(kinds))}")
    return kinds[0]


@dataclass
class Rule:
    """One rule: ``params`` are the mapping as written in the recipe (without ``name``)."""

    params: dict
    name: str = ""
    kind: str = ""

    def __post_init__(self):
        if not isinstance(self.params, dict):
            raise RecipeError(f"a rule is a mapping, got {self.params!r}")
        self.params = {k: v for k, v in self.params.items() if k != "name"}
        self.kind = rule_kind(self.params)
        spec = RULES[self.kind]
        unknown = set(self.params) - spec["params"]
        if unknown:
            raise RecipeError(f"{self.kind}: unknown setting(s) {sorted(map(str, unknown))} "
                              f"(allowed: {sorted(spec['params'])})")
        spec["check"](self.params)
        if not self.name:
            self.name = spec["name"](self.params)

    @classmethod
    def parse(cls, d) -> "Rule":
        if not isinstance(d, dict):
            raise RecipeError(f"a rule is a mapping such as {{column: similarity, min: 0.28}}, got {d!r}")
        name = d.get("name", "")
        if not isinstance(name, str):
            raise RecipeError("a rule's name must be a string")
        return cls(dict(d), name)

    def columns(self) -> set[str]:
        return set(RULES[self.kind]["columns"](self.params))

    def score_requests(self) -> list[dict]:
        """The score columns this rule reads that must be computed (empty for metadata rules)."""
        return RULES[self.kind]["score"](self.params)

    def keep(self, base: Path | None = None) -> pl.Expr:
        """True where the row passes this rule (nulls count as failing); `base`: the folder relative
        files (word lists) resolve against (the recipe file's)."""
        keep = RULES[self.kind]["keep"]
        expr = keep(self.params, base) if self.kind in _USES_BASE else keep(self.params)
        return expr.fill_null(False)

    def to_dict(self) -> dict:
        d = dict(self.params)
        if self.name != RULES[self.kind]["name"](self.params):
            d["name"] = self.name
        return d


# -- recipes ----------------------------------------------------------------------------------------
def _too_deep(where, line: int | None = None) -> RecipeError:
    at = f" (line {line + 1})" if line is not None else ""
    return RecipeError(f"nested more than {MAX_DEPTH} deep{at}: not a recipe", where)


def _check_yaml_events(yaml, text: str, loader, where) -> None:
    """One pass over the parser's events (no objects built): nesting depth, and aliases only of
    single values. Refuses a "billion laughs" file at its first alias of a list or mapping."""
    depth = 0
    collection_anchor: dict[str, bool] = {}
    for ev in yaml.parse(text, Loader=loader):
        if isinstance(ev, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise _too_deep(where, getattr(ev.start_mark, "line", None))
            if ev.anchor is not None:
                collection_anchor[ev.anchor] = True
        elif isinstance(ev, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            depth -= 1
        elif isinstance(ev, yaml.ScalarEvent) and ev.anchor is not None:
            collection_anchor[ev.anchor] = False
        elif isinstance(ev, yaml.AliasEvent) and collection_anchor.get(ev.anchor):
            line = getattr(ev.start_mark, "line", None)
            raise RecipeError(f"YAML alias *{ev.anchor}{'' if line is None else f' (line {line + 1})'} repeats a "
                              "list or mapping: a recipe allows aliases of single values only", where)


def _check_depth(data, where) -> None:
    stack = [(data, 1)]
    while stack:
        obj, d = stack.pop()
        if isinstance(obj, (dict, list)):
            if d > MAX_DEPTH:
                raise _too_deep(where)
            stack.extend((v, d + 1) for v in (obj.values() if isinstance(obj, dict) else obj))


def _parse_recipe_text(text: str, is_json: bool, where):
    """JSON or YAML text -> Python objects, within the module's limits (see the docstring)."""
    kind = "JSON" if is_json else "YAML"
    try:
        if is_json:
            data = json.loads(text)
        else:
            import yaml

            loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
            _check_yaml_events(yaml, text, loader, where)
            data = yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader (C or Python)
    except RecipeError:
        raise
    except RecursionError:
        raise _too_deep(where) from None
    except Exception as exc:  # noqa: BLE001 - any parse error is a bad recipe file
        raise RecipeError(f"not valid {kind} ({exc})".replace("\n", " "), where) from None
    _check_depth(data, where)
    return data


@dataclass
class Recipe:
    rules: list[Rule] = field(default_factory=list)
    name: str = "recipe"
    description: str = ""
    base: Path | None = field(default=None, compare=False)  # relative files in rules resolve against it

    def __post_init__(self):
        if len(self.rules) > MAX_RULES:
            raise RecipeError(f"{len(self.rules):,} rules: a recipe holds at most {MAX_RULES:,}")
        seen: set[str] = set()
        for r in self.rules:
            if r.name in seen:
                raise RecipeError(f"two rules are named {r.name!r}: give one a `name:`")
            seen.add(r.name)

    @classmethod
    def from_dict(cls, d: dict, where: str | Path | None = None) -> "Recipe":
        if not isinstance(d, dict) or not isinstance(d.get("rules"), list):
            raise RecipeError("a recipe is a mapping with a `rules:` list", where)
        unknown = set(d) - {"name", "description", "rules"}
        if unknown:
            raise RecipeError(f"unknown recipe key(s) {sorted(map(str, unknown))}", where)
        if len(d["rules"]) > MAX_RULES:
            raise RecipeError(f"{len(d['rules']):,} rules: a recipe holds at most {MAX_RULES:,}", where)
        rules = []
        for i, r in enumerate(d["rules"]):
            try:
                rules.append(Rule.parse(r))
            except RecipeError as exc:
                raise RecipeError(f"rule {i + 1}: {exc.reason}", where) from None
        try:
            return cls(rules, str(d.get("name", "recipe")), str(d.get("description", "")))
        except RecipeError as exc:
            raise RecipeError(exc.reason, where) from None

    @classmethod
    def load(cls, path: str | Path) -> "Recipe":
        path = Path(path)
        try:
            with open(path, "rb") as f:
                raw = f.read(MAX_RECIPE_BYTES + 1)
        except OSError as exc:
            raise RecipeError(f"cannot read ({exc.strerror or exc})", path) from None
        if len(raw) > MAX_RECIPE_BYTES:
            raise RecipeError(f"recipe file is larger than {MAX_RECIPE_BYTES // (1 << 20)} MiB: not a recipe", path)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RecipeError(f"not UTF-8 text (byte {exc.start}): not a recipe file", path) from None
        data = _parse_recipe_text(text, path.suffix == ".json", path)
        r = cls.from_dict(data, path)
        r.base = path.resolve().parent
        return r

    def to_dict(self) -> dict:
        d = {"name": self.name}
        if self.description:
            d["description"] = self.description
        d["rules"] = [r.to_dict() for r in self.rules]
        return d

    def save(self, path: str | Path) -> None:
        """Write the recipe (atomically); relative file paths in rules are rewritten to stay valid
        from the new file's folder."""
        path = Path(path)
        d = self.to_dict()
        if self.base is not None:
            for r in d["rules"]:
                for key in ("prompt_embedding", "head", "image_clusters"):
                    v = r.get(key)
                    if isinstance(v, str) and (Path(v).suffix and not Path(v).is_absolute()) and (self.base / v).exists():
                        r[key] = os.path.relpath(self.base / v, path.resolve().parent)
                    elif isinstance(v, list):
                        r[key] = [os.path.relpath(self.base / f, path.resolve().parent)
                                  if not Path(f).is_absolute() and (self.base / f).exists() else f for f in v]
                for key in ("caption_keywords", "image_clusters"):  # {file: WORDS.txt}
                    v = r.get(key)
                    if isinstance(v, dict) and "file" in v and not Path(v["file"]).is_absolute() \
                            and (self.base / v["file"]).exists():
                        r[key] = {"file": os.path.relpath(self.base / v["file"], path.resolve().parent)}
        if path.suffix == ".json":
            text = json.dumps(d, indent=2) + "\n"
        else:
            import yaml

            text = yaml.safe_dump(d, sort_keys=False, allow_unicode=True)
        tmp = path.with_name(path.name + ".partial")
        tmp.write_text(text)
        tmp.replace(path)

    def columns(self) -> set[str]:
        out: set[str] = set()
        for r in self.rules:
            out |= r.columns()
        return out

    def score_requests(self) -> list[dict]:
        seen, out = set(), []
        for r in self.rules:
            for q in r.score_requests():
                key = json.dumps(q, sort_keys=True)
                if key not in seen:
                    seen.add(key)
                    out.append(q)
        return out


# -- selections -------------------------------------------------------------------------------------
@dataclass
class Selection:
    """The outcome of a recipe over rows: kept or removed, and why."""

    rows: np.ndarray  # int64 global row ids evaluated, in row order
    reason: np.ndarray  # int16 per row: index of the first rule that removed it, -1 if kept
    rule_names: list[str]
    alone: np.ndarray  # rows each rule removes on its own
    _overlaps: np.ndarray | None = field(default=None, repr=False)  # (k, k), or None: computed from fail_bits when asked
    scores: dict = field(default_factory=dict)  # score columns used: computed / cached / stale shards
    repeats: np.ndarray | None = None  # per row of `rows`, from sampling: how many times to write it (export honours it)
    fail_bits: np.ndarray | None = field(default=None, repr=False)  # (k, ceil(n/8)) uint8: np.packbits of "rule i removes row j"
    warnings: list[str] = field(default_factory=list)  # see selection_warnings (scoring.apply fills it)

    @property
    def overlaps(self) -> np.ndarray:
        """(k, k) int64: rows removed by both rule i and rule j (diagonal = alone). O(k^2 n): computed
        on first use (from the packed fail bits), not when the recipe is evaluated."""
        if self._overlaps is None:
            self._overlaps = _overlaps_from_bits(self.fail_bits, len(self.rule_names))
        return self._overlaps

    @property
    def mask(self) -> np.ndarray:
        return self.reason < 0

    @property
    def kept(self) -> int:
        return int(self.mask.sum())

    @property
    def removed(self) -> int:
        return len(self.rows) - self.kept

    def kept_rows(self) -> np.ndarray:
        return self.rows[self.mask]

    def counts(self) -> pl.DataFrame:
        """Per rule: rows it removes alone, rows it removes after the rules before it, rows left after it."""
        k = len(self.rule_names)
        sequential = np.bincount(self.reason[self.reason >= 0], minlength=k)[:k] if k else np.zeros(0, int)
        left = len(self.rows) - np.cumsum(sequential)
        return pl.DataFrame({
            "rule": self.rule_names,
            "removed_alone": self.alone.astype(np.int64),
            "removed_in_order": sequential.astype(np.int64),
            "remaining": left.astype(np.int64),
        }, schema={"rule": pl.Utf8, "removed_alone": pl.Int64, "removed_in_order": pl.Int64, "remaining": pl.Int64})

    def overlap_table(self) -> pl.DataFrame:
        return pl.DataFrame({"rule": self.rule_names, **{n: self.overlaps[:, i] for i, n in enumerate(self.rule_names)}})

    def reasons(self) -> pl.DataFrame:
        """Every removed row with the name of the first rule that removed it."""
        gone = ~self.mask
        names = np.asarray(self.rule_names, dtype=object)
        return pl.DataFrame({ROW: self.rows[gone], "reason": names[self.reason[gone]].tolist()},
                            schema={ROW: pl.Int64, "reason": pl.Utf8})

    def summary(self, recipe: "Recipe | None" = None) -> dict:
        """A JSON-ready summary: rows, kept, removed, and what each rule removed."""
        kinds = [r.kind for r in recipe.rules] if recipe is not None else [None] * len(self.rule_names)
        rules = [{"rule": r["rule"], "kind": k, "removed_alone": r["removed_alone"],
                  "removed_in_order": r["removed_in_order"], "remaining": r["remaining"]}
                 for r, k in zip(self.counts().to_dicts(), kinds)]
        return {"rows": len(self.rows), "kept": self.kept, "removed": self.removed, "rules": rules}


def _overlaps_from_bits(bits: np.ndarray | None, k: int) -> np.ndarray:
    """Pairwise counts of rows failing both rules, from packed fail bits: a float64 Gram matrix per
    block of rows (exact: counts stay far below 2**53), at most ~64 MB of unpacked bits at a time."""
    out = np.zeros((k, k), np.int64)
    if bits is None or k == 0 or bits.shape[1] == 0:
        return out
    step = max(1, 8_000_000 // (8 * k))  # bytes of each rule's bits per block
    for a in range(0, bits.shape[1], step):
        f = np.unpackbits(bits[:, a:a + step], axis=1).astype(np.float64)  # padding bits are 0
        out += np.rint(f @ f.T).astype(np.int64)
    return out


def evaluate(frame: pl.LazyFrame | pl.DataFrame, recipe: Recipe, where: str | None = None) -> Selection:
    """Apply `recipe` to a frame holding ``row`` and the columns its rules read."""
    lf = frame.lazy()
    have = set(lf.collect_schema().names())
    missing = sorted((recipe.columns() | {ROW}) - have)
    if missing:
        raise RecipeError(f"recipe {recipe.name!r} needs column(s) {missing}, which the data lacks "
                          f"(it has: {', '.join(sorted(have))})", where)
    keeps = []
    for i, r in enumerate(recipe.rules):
        try:
            keeps.append(r.keep(recipe.base).alias(f"__keep{i}"))
        except (pl.exceptions.PolarsError, TypeError, ValueError) as exc:  # a value polars cannot take
            raise RecipeError(f"rule {i + 1} ({r.name}): cannot be evaluated: {exc}".replace("\n", " "), where) from None
    try:
        df = lf.select(pl.col(ROW), *keeps).collect()
    except pl.exceptions.PolarsError as exc:
        raise RecipeError(f"recipe {recipe.name!r} could not be evaluated: {exc}".replace("\n", " "), where) from None
    rows = df[ROW].to_numpy().astype(np.int64)
    n, k = len(rows), len(recipe.rules)
    # O(k n): each rule's column once; its own count, the rows it is the first to remove, its packed
    # bits (for overlaps, computed only when asked). No k x k or k x n bool work here.
    reason = np.full(n, -1, dtype=np.int16)
    alone = np.zeros(k, np.int64)
    bits = np.zeros((k, (n + 7) // 8), np.uint8)
    open_ = np.ones(n, bool)  # rows no earlier rule removed
    for i in range(k):
        fail = ~df[f"__keep{i}"].to_numpy()
        alone[i] = np.count_nonzero(fail)
        if alone[i]:
            bits[i] = np.packbits(fail)
            first = fail & open_
            reason[first] = i
            open_ &= ~first
    return Selection(rows, reason, [r.name for r in recipe.rules], alone, fail_bits=bits)


def apply(collection, recipe: Recipe, scores: pl.LazyFrame | None = None, encoder=None, cache: bool = True,
          progress: bool = False) -> Selection:
    """Evaluate `recipe` over a collection: its metadata, the score columns the rules need (computed
    and cached by :mod:`workbench.scoring`), and any `scores` frame given (joined on ``row``)."""
    from .scoring import apply as _apply

    return _apply(collection, recipe, encoder=encoder, cache=cache, progress=progress, scores=scores)


# -- results that could mislead: warnings, and the refusal of an empty export --------------------------
_THRESHOLD_KINDS = ("column", "prompt", "head")


def threshold_bounds(rule: Rule) -> list[tuple[str, str, float]]:
    """(column, bound, value) of each threshold (min/max/above/below) a column, prompt or head rule has."""
    if rule.kind not in _THRESHOLD_KINDS:
        return []
    column = next(iter(RULES[rule.kind]["columns"](rule.params)))
    return [(column, k, float(rule.params[k])) for k in _BOUNDS if k in rule.params]


def column_ranges(frame: pl.LazyFrame | pl.DataFrame, recipe: Recipe) -> dict[str, tuple[float, float] | None]:
    """Least and greatest finite value of each numeric column a threshold of `recipe` compares (one
    pass over those columns only); None for a column without any finite value."""
    lf = frame.lazy()
    schema = lf.collect_schema()
    cols = sorted({c for r in recipe.rules for c, _, _ in threshold_bounds(r)
                   if c in schema and schema[c].is_numeric()})
    if not cols:
        return {}
    exprs = []
    for i, c in enumerate(cols):
        v = pl.col(c).cast(pl.Float64)
        v = v.filter(v.is_finite())
        exprs += [v.min().alias(f"__lo{i}"), v.max().alias(f"__hi{i}")]
    row = lf.select(exprs).collect().row(0)
    return {c: None if row[2 * i] is None else (float(row[2 * i]), float(row[2 * i + 1])) for i, c in enumerate(cols)}


def _beyond(t: float, edge: float, side: int) -> bool:
    """t lies past `edge` (side -1: below it, +1: above it), by more than float32 rounding."""
    if math.isclose(t, edge, rel_tol=1e-6, abs_tol=1e-12):
        return False
    return t < edge if side < 0 else t > edge


def selection_warnings(recipe: Recipe, counts: dict, ranges: dict) -> list[str]:
    """What in a recipe's outcome may mislead, one line each: a threshold that lies outside every
    value of its column (``similarity >= 30`` where similarity runs 0.2..0.4), a rule that removes
    every row, a recipe that keeps none. `counts`: :meth:`Selection.summary` or the live counts
    (``rows``, ``kept``, ``rules`` in recipe order); `ranges`: :func:`column_ranges`. The CLI prints
    these (``apply``), the notebook shows them under its counts."""
    n = int(counts["rows"])
    out: list[str] = []
    if n == 0:
        return out
    explained = False
    for rule, c in zip(recipe.rules, counts["rules"]):
        removes_all = int(c["removed_alone"]) >= n
        said = False
        for column, key, t in threshold_bounds(rule):
            if column not in ranges:
                continue
            rng = ranges[column]
            if rng is None:
                out.append(f"rule {rule.name!r}: {column} has no value in any row, so the rule removes every row")
                said = True
                break
            lo, hi = rng
            low_side = key in ("min", "above")  # keeps values above t
            if not (_beyond(t, lo, -1) or _beyond(t, hi, +1)):
                continue
            removes = _beyond(t, hi, +1) if low_side else _beyond(t, lo, -1)
            effect = "removes every row" if removes else "removes no row that has a value"
            out.append(f"rule {rule.name!r}: the threshold {column} {_BOUNDS[key]} {_fmt(t)} lies outside every value "
                       f"of {column} ({lo:.4g} to {hi:.4g}): it {effect}")
            said = said or removes
        if removes_all and not said:
            out.append(f"rule {rule.name!r} removes every row ({n:,} of {n:,})")
        explained = explained or removes_all
    if int(counts["kept"]) == 0 and not explained:
        out.append(f"the recipe keeps no rows: each of the {n:,} rows is removed by some rule")
    return out


def require_kept(counts: dict, recipe_name: str | None = None, where=None) -> None:
    """Refuse to export an outcome that keeps no rows (the CLI's apply and the notebook's export)."""
    if int(counts["kept"]) == 0:
        who = f"recipe {recipe_name!r}" if recipe_name else "the recipe"
        raise RecipeError(f"{who} keeps no rows (0 of {int(counts['rows']):,}): nothing to export", where)


# -- presets: the releases' rules (REFERENCE.md §2) ---------------------------------------------------
# DataComp's caption filter (basic's text rules), which its text- and image-based baselines apply too
_DATACOMP_CAPTION = ({"language": ["en"]}, {"caption_length": {"min_words": 3, "min_chars": 6}})

PRESETS: dict[str, dict] = {
    "laion400m": {
        "name": "laion400m",
        "description": "LAION-400M (ViT-B/32): alt-text >= 5 chars, exact (url, caption) dedup, similarity >= 0.30, "
                       "and the zero-shot NSFW tag's under-age/animal drops (NSFW-tagged rows were kept, tagged). "
                       "The 5 KB image-size rule needs file sizes, which embedding shards do not carry.",
        "rules": [
            {"caption_length": {"min_chars": 5}},
            {"dedup": "exact", "columns": ["url", "caption"]},
            {"column": "similarity", "min": 0.30},
            {"zero_shot": "laion400m-nsfw"},
        ],
    },
    "laion2b-en": {
        "name": "laion2b-en",
        "description": "LAION-2B-en: alt-text >= 5 chars, exact (url, caption) dedup, ViT-B/32 similarity >= 0.28 "
                       "(laion2B-multi used 0.26 with multilingual CLIP)",
        "rules": [
            {"caption_length": {"min_chars": 5}},
            {"dedup": "exact", "columns": ["url", "caption"]},
            {"column": "similarity", "min": 0.28},
        ],
    },
    "laion-aesthetics": {
        "name": "laion-aesthetics",
        "description": "LAION-Aesthetics V2: punsafe < 0.5, pwatermark < 0.8, and the improved aesthetic predictor "
                       "(ViT-L/14) >= 5 (the 5+ subset; the release also cut at 6, 6.25 and 6.5)",
        "rules": [
            {"column": "punsafe", "below": 0.5},
            {"column": "pwatermark", "below": 0.8},
            {"head": "aesthetic-v2-l14", "min": 5.0},
        ],
    },
    "datacomp-basic": {
        "name": "datacomp-basic",
        "description": "DataComp basic: English caption (fastText language ID), caption > 2 words and > 5 chars, "
                       "min image side >= 200 px, aspect ratio <= 3",
        "rules": [*_DATACOMP_CAPTION, {"image_size": {"min_side": 200, "max_aspect": 3}}],
    },
    "datacomp-clip-score": {
        "name": "datacomp-clip-score",
        "description": "DataComp clip_score: the top 30% by ViT-L/14 image-text cosine (open a DataComp pool with "
                       "model l14; for the ViT-B/32 variant use the preset datacomp-clip-score-b32)",
        "rules": [{"top_fraction": 0.30, "by": "similarity"}],
    },
    "datacomp-laion2b": {
        "name": "datacomp-laion2b",
        "description": "DataComp's LAION-2B filter: English caption (fastText language ID) and ViT-B/32 image-text "
                       "cosine >= 0.28 (open a DataComp pool with model b32)",
        "rules": [{"language": ["en"]}, {"column": "similarity", "min": 0.28}],
    },
    "datacomp-text-based": {
        "name": "datacomp-text-based",
        "description": "DataComp text-based: English captions of > 2 words and > 5 chars that name an ImageNet class "
                       "(whole words, any case). DataComp matched ImageNet-21k synset names; this list is "
                       "ImageNet-1k's 1,000 class names (give your own with caption_keywords: {file: WORDS.txt})",
        "rules": [*_DATACOMP_CAPTION, {"caption_keywords": {"list": "imagenet-1k"}, "action": "keep"}],
    },
    "datacomp-image-based": {
        "name": "datacomp-image-based",
        "description": "DataComp image-based: English captions of > 2 words and > 5 chars, and an image in a k-means "
                       "cluster (k = rows/128, at most 100,000) that is the nearest centroid of some ImageNet "
                       "reference. DataComp used ImageNet-1k train image embeddings and clustered after the caption "
                       "filter; this preset uses the text embeddings of 'a photo of a {class}.' for the 1,000 classes "
                       "and clusters all rows (give image embeddings with image_clusters: REF.npy)",
        "rules": [*_DATACOMP_CAPTION, {"image_clusters": {"list": "imagenet-1k"}}],
    },
    "datacomp-image-clip-score": {
        "name": "datacomp-image-clip-score",
        "description": "DataComp-1B's recipe: image-based AND clip_score (top 30% by ViT-L/14 image-text cosine, "
                       "ranked over all rows)",
        "rules": [*_DATACOMP_CAPTION, {"image_clusters": {"list": "imagenet-1k"}},
                  {"top_fraction": 0.30, "by": "similarity"}],
    },
    "datacomp-clip-score-b32": {
        "name": "datacomp-clip-score-b32",
        "description": "DataComp clip_score, ViT-B/32 variant: image-text cosine >= 0.25 (open the pool with model b32)",
        "rules": [{"column": "similarity", "min": 0.25}],
    },
}


def preset(name: str) -> Recipe:
    if name not in PRESETS:
        raise RecipeError(f"unknown preset {name!r} (known: {', '.join(PRESETS)})")
    return Recipe.from_dict(PRESETS[name])


def histogram(values, bins: int = 64, value_range: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Counts and bin edges of the finite values (nulls and NaN left out)."""
    v = np.asarray(pl.Series(values).drop_nulls().cast(pl.Float64).to_numpy())
    v = v[np.isfinite(v)]
    return np.histogram(v, bins=bins, range=value_range)
