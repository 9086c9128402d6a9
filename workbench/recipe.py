"""Recipes: declarative rules over metadata and score columns, compiled to polars expressions.

A recipe is a list of rules. Each rule keeps or removes rows by one criterion and has a stable,
unique name. Applying a recipe gives a :class:`Selection` with the *first* rule that removed each
row (its reason), counts per rule (alone, and after the rules before it) and pairwise overlaps.

Recipe files are YAML or JSON::

    name: my-subset
    rules:
      - {kind: caption_length, min_chars: 5}
      - {kind: dedup_exact}                          # first (url, caption) in row order is kept
      - {kind: column, column: similarity, min: 0.28}
      - {kind: column, column: punsafe, below: 0.5}
      - {kind: caption_keywords, words: [watermark, "stock photo"]}
      - {kind: drop_rows, rows: [12, 97]}

A missing value (null) fails every rule: a row without a similarity is not kept by a
similarity rule, nor a row without a caption by a caption rule. Thresholds: ``min`` (>=), ``max`` (<=), ``above`` (>), ``below`` (<).
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from .errors import RecipeError
from .schema import ROW

_BOUNDS = {"min": ">=", "max": "<=", "above": ">", "below": "<"}


def _num(v, key, where):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise RecipeError(f"{key} must be a finite number, got {v!r}", where)
    return float(v)


def _fmt(v: float) -> str:
    return f"{v:g}"


# -- rules ------------------------------------------------------------------------------------------
@dataclass
class Rule:
    """One rule. ``kind`` picks the criterion; ``params`` are its settings as written in the recipe."""

    kind: str
    params: dict
    name: str = ""

    def __post_init__(self):
        spec = RULES.get(self.kind)
        if spec is None:
            raise RecipeError(f"unknown rule kind {self.kind!r} (known: {', '.join(sorted(RULES))})")
        allowed = set(spec["params"]) | {"name"}
        unknown = set(self.params) - allowed
        if unknown:
            raise RecipeError(f"rule {self.kind}: unknown setting(s) {sorted(unknown)} (allowed: {sorted(allowed - {'name'})})")
        spec["check"](self.params)
        if not self.name:
            self.name = spec["name"](self.params)

    def columns(self) -> set[str]:
        return set(RULES[self.kind]["columns"](self.params))

    def keep(self) -> pl.Expr:
        """True where the row passes this rule (nulls count as failing)."""
        return RULES[self.kind]["keep"](self.params).fill_null(False)

    def to_dict(self) -> dict:
        d = {"kind": self.kind, **self.params}
        if self.name != RULES[self.kind]["name"](self.params):
            d["name"] = self.name
        return d


def _check_column(p):
    if not isinstance(p.get("column"), str):
        raise RecipeError("rule column: needs `column: NAME`")
    bounds = [k for k in _BOUNDS if k in p]
    if not bounds and "in" not in p and "not_in" not in p:
        raise RecipeError(f"rule column {p['column']}: needs one of min, max, above, below, in, not_in")
    for k in bounds:
        _num(p[k], k, None)
    for k in ("in", "not_in"):
        if k in p and not isinstance(p[k], list):
            raise RecipeError(f"rule column {p['column']}: `{k}` must be a list")


def _keep_column(p) -> pl.Expr:
    c = pl.col(p["column"])
    conds = []
    for k, op in _BOUNDS.items():
        if k in p:
            v = float(p[k])
            conds.append({">=": c >= v, "<=": c <= v, ">": c > v, "<": c < v}[op])
    if "in" in p:
        conds.append(c.is_in(p["in"]))
    if "not_in" in p:
        conds.append(~c.is_in(p["not_in"]) & c.is_not_null())
    return pl.all_horizontal(conds)


def _name_column(p) -> str:
    parts = [f"{p['column']}{op}{_fmt(float(p[k]))}" for k, op in _BOUNDS.items() if k in p]
    if "in" in p:
        parts.append(f"{p['column']} in {p['in']}")
    if "not_in" in p:
        parts.append(f"{p['column']} not in {p['not_in']}")
    return " & ".join(parts)


def _check_caption_length(p):
    keys = [k for k in ("min_chars", "max_chars", "min_words") if k in p]
    if not keys:
        raise RecipeError("rule caption_length: needs min_chars, max_chars or min_words")
    for k in keys:
        if not isinstance(p[k], int) or isinstance(p[k], bool) or p[k] < 0:
            raise RecipeError(f"rule caption_length: {k} must be a non-negative integer, got {p[k]!r}")


def _keep_caption_length(p) -> pl.Expr:
    c = pl.col(p.get("column", "caption"))
    conds = []
    if "min_chars" in p:
        conds.append(c.str.len_chars() >= p["min_chars"])
    if "max_chars" in p:
        conds.append(c.str.len_chars() <= p["max_chars"])
    if "min_words" in p:
        conds.append(c.str.extract_all(r"\S+").list.len() >= p["min_words"])
    return pl.all_horizontal(conds)


def _name_caption_length(p) -> str:
    parts = []
    if "min_chars" in p:
        parts.append(f"caption >= {p['min_chars']} chars")
    if "max_chars" in p:
        parts.append(f"caption <= {p['max_chars']} chars")
    if "min_words" in p:
        parts.append(f"caption >= {p['min_words']} words")
    return " & ".join(parts)


def _check_action(p, kind):
    if p.get("action", "drop") not in ("drop", "keep"):
        raise RecipeError(f"rule {kind}: action must be drop or keep, got {p['action']!r}")


def _check_regex(p):
    _check_action(p, "caption_regex")
    if not isinstance(p.get("pattern"), str):
        raise RecipeError("rule caption_regex: needs `pattern: REGEX`")
    try:
        re.compile(p["pattern"])
    except re.error as exc:
        raise RecipeError(f"rule caption_regex: invalid pattern {p['pattern']!r} ({exc})") from None


def _matches(p, pattern: str) -> pl.Expr:
    flags = "" if p.get("case_sensitive") else "(?i)"
    hit = pl.col(p.get("column", "caption")).str.contains(flags + pattern)
    return ~hit if p.get("action", "drop") == "drop" else hit


def _check_keywords(p):
    _check_action(p, "caption_keywords")
    words = p.get("words")
    if not isinstance(words, list) or not words or not all(isinstance(w, str) and w for w in words):
        raise RecipeError("rule caption_keywords: needs `words: [non-empty strings]`")


def _keyword_pattern(p) -> str:
    alts = "|".join(re.escape(w) for w in p["words"])
    return rf"\b(?:{alts})\b" if p.get("whole_words", True) else f"(?:{alts})"


def _check_size(p):
    keys = [k for k in ("min_side", "min_width", "min_height", "max_aspect") if k in p]
    if not keys:
        raise RecipeError("rule image_size: needs min_side, min_width, min_height or max_aspect")
    for k in keys:
        if _num(p[k], k, None) <= 0:
            raise RecipeError(f"rule image_size: {k} must be > 0")


def _keep_size(p) -> pl.Expr:
    w, h = pl.col("width").cast(pl.Float64), pl.col("height").cast(pl.Float64)
    conds = []
    if "min_side" in p:
        conds.append(pl.min_horizontal(w, h) >= p["min_side"])
    if "min_width" in p:
        conds.append(w >= p["min_width"])
    if "min_height" in p:
        conds.append(h >= p["min_height"])
    if "max_aspect" in p:
        conds.append(pl.max_horizontal(w, h) / pl.min_horizontal(w, h) <= p["max_aspect"])
    return pl.all_horizontal(conds)


def _name_size(p) -> str:
    names = {"min_side": "min side >= {}", "min_width": "width >= {}", "min_height": "height >= {}",
             "max_aspect": "aspect <= {}"}
    return " & ".join(names[k].format(_fmt(float(p[k]))) for k in names if k in p)


def _check_dedup(p):
    cols = p.get("columns", ["url", "caption"])
    if not isinstance(cols, list) or not cols or not all(isinstance(c, str) for c in cols):
        raise RecipeError("rule dedup_exact: `columns` must be a non-empty list of column names")


def _check_top(p):
    if not isinstance(p.get("column"), str):
        raise RecipeError("rule top_fraction: needs `column: NAME`")
    f = _num(p.get("fraction"), "fraction", None)
    if not 0 < f <= 1:
        raise RecipeError(f"rule top_fraction: fraction must be in (0, 1], got {f}")


def _keep_top(p) -> pl.Expr:
    c = pl.col(p["column"])
    # ordinal rank: ties go to the earlier row, so the result is deterministic
    k = (c.count() * float(p["fraction"])).ceil()
    return c.rank("ordinal", descending=True) <= k


def _check_rows(p):
    rows = p.get("rows")
    if not isinstance(rows, list) or not all(isinstance(r, int) and not isinstance(r, bool) and r >= 0 for r in rows):
        raise RecipeError("rule drop_rows/keep_rows: `rows` must be a list of global row ids (integers >= 0)")


RULES: dict[str, dict] = {
    "column": dict(params={"column", "min", "max", "above", "below", "in", "not_in"}, check=_check_column,
                   keep=_keep_column, name=_name_column, columns=lambda p: [p["column"]]),
    "caption_length": dict(params={"min_chars", "max_chars", "min_words", "column"}, check=_check_caption_length,
                           keep=_keep_caption_length, name=_name_caption_length,
                           columns=lambda p: [p.get("column", "caption")]),
    "caption_regex": dict(params={"pattern", "action", "case_sensitive", "column"}, check=_check_regex,
                          keep=lambda p: _matches(p, p["pattern"]),
                          name=lambda p: f"caption {'matches' if p.get('action', 'drop') == 'keep' else 'does not match'} /{p['pattern']}/",
                          columns=lambda p: [p.get("column", "caption")]),
    "caption_keywords": dict(params={"words", "action", "case_sensitive", "whole_words", "column"}, check=_check_keywords,
                             keep=lambda p: _matches(p, _keyword_pattern(p)),
                             name=lambda p: f"caption {'has' if p.get('action', 'drop') == 'keep' else 'lacks'} {', '.join(p['words'][:3])}{'...' if len(p['words']) > 3 else ''}",
                             columns=lambda p: [p.get("column", "caption")]),
    "image_size": dict(params={"min_side", "min_width", "min_height", "max_aspect"}, check=_check_size,
                       keep=_keep_size, name=_name_size, columns=lambda p: ["width", "height"]),
    "dedup_exact": dict(params={"columns"}, check=_check_dedup,
                        keep=lambda p: pl.struct(p.get("columns", ["url", "caption"])).is_first_distinct(),
                        name=lambda p: f"first of duplicate {' + '.join(p.get('columns', ['url', 'caption']))}",
                        columns=lambda p: p.get("columns", ["url", "caption"])),
    "top_fraction": dict(params={"column", "fraction"}, check=_check_top, keep=_keep_top,
                         name=lambda p: f"top {_fmt(100 * float(p['fraction']))}% by {p['column']}",
                         columns=lambda p: [p["column"]]),
    "drop_rows": dict(params={"rows"}, check=_check_rows, keep=lambda p: ~pl.col(ROW).is_in(p["rows"]),
                      name=lambda p: f"drop {len(p['rows'])} listed rows", columns=lambda p: [ROW]),
    "keep_rows": dict(params={"rows"}, check=_check_rows, keep=lambda p: pl.col(ROW).is_in(p["rows"]),
                      name=lambda p: f"keep only {len(p['rows'])} listed rows", columns=lambda p: [ROW]),
}


# -- recipes ----------------------------------------------------------------------------------------
@dataclass
class Recipe:
    rules: list[Rule] = field(default_factory=list)
    name: str = "recipe"
    description: str = ""

    def __post_init__(self):
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
            raise RecipeError(f"unknown recipe key(s) {sorted(unknown)}", where)
        rules = []
        for i, r in enumerate(d["rules"]):
            if not isinstance(r, dict) or "kind" not in r:
                raise RecipeError(f"rule {i + 1}: each rule is a mapping with a `kind:`", where)
            params = {k: v for k, v in r.items() if k not in ("kind", "name")}
            try:
                rules.append(Rule(r["kind"], params, r.get("name", "")))
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
            text = path.read_text()
        except OSError as exc:
            raise RecipeError(f"cannot read ({exc.strerror})", path) from None
        try:
            if path.suffix == ".json":
                data = json.loads(text)
            else:
                import yaml

                data = yaml.safe_load(text)
        except Exception as exc:  # noqa: BLE001 - any parse error is a bad recipe file
            raise RecipeError(f"not valid {'JSON' if path.suffix == '.json' else 'YAML'} ({exc})".replace("\n", " "), path) from None
        return cls.from_dict(data, path)

    def to_dict(self) -> dict:
        d = {"name": self.name}
        if self.description:
            d["description"] = self.description
        d["rules"] = [r.to_dict() for r in self.rules]
        return d

    def save(self, path: str | Path) -> None:
        path = Path(path)
        if path.suffix == ".json":
            text = json.dumps(self.to_dict(), indent=2) + "\n"
        else:
            import yaml

            text = yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)
        tmp = path.with_name(path.name + ".partial")
        tmp.write_text(text)
        tmp.replace(path)

    def columns(self) -> set[str]:
        out: set[str] = set()
        for r in self.rules:
            out |= r.columns()
        return out


# -- selections -------------------------------------------------------------------------------------
@dataclass
class Selection:
    """The outcome of a recipe over rows: kept or removed, and why."""

    rows: np.ndarray  # int64 global row ids evaluated, in row order
    reason: np.ndarray  # int16 per row: index of the first rule that removed it, -1 if kept
    rule_names: list[str]
    alone: np.ndarray  # rows each rule removes on its own
    overlaps: np.ndarray  # (k, k): rows removed by both rule i and rule j (diagonal = alone)

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


def evaluate(frame: pl.LazyFrame | pl.DataFrame, recipe: Recipe, where: str | None = None) -> Selection:
    """Apply `recipe` to a frame holding ``row`` and the columns its rules read."""
    lf = frame.lazy()
    have = set(lf.collect_schema().names())
    missing = sorted((recipe.columns() | {ROW}) - have)
    if missing:
        raise RecipeError(f"recipe {recipe.name!r} needs column(s) {missing}, which the data lacks "
                          f"(it has: {', '.join(sorted(have))})", where)
    keeps = [r.keep().alias(f"__keep{i}") for i, r in enumerate(recipe.rules)]
    try:
        df = lf.select(pl.col(ROW), *keeps).collect()
    except pl.exceptions.PolarsError as exc:
        raise RecipeError(f"recipe {recipe.name!r} could not be evaluated: {exc}".replace("\n", " "), where) from None
    rows = df[ROW].to_numpy().astype(np.int64)
    k = len(recipe.rules)
    fail = np.empty((k, len(rows)), dtype=bool)
    for i in range(k):
        fail[i] = ~df[f"__keep{i}"].to_numpy()
    reason = np.full(len(rows), -1, dtype=np.int16)
    if k:
        any_fail = fail.any(axis=0)
        reason[any_fail] = fail[:, any_fail].argmax(axis=0)
    overlaps = np.zeros((k, k), dtype=np.int64)
    for i in range(k):
        for j in range(i, k):
            overlaps[i, j] = overlaps[j, i] = np.count_nonzero(fail[i] & fail[j])
    return Selection(rows, reason, [r.name for r in recipe.rules], np.diag(overlaps).copy(), overlaps)


def apply(collection, recipe: Recipe, scores: pl.LazyFrame | None = None) -> Selection:
    """Evaluate `recipe` over a collection's metadata (and score columns joined on ``row``)."""
    lf = collection.metadata
    if scores is not None:
        lf = lf.join(scores.lazy(), on=ROW, how="left")
    needed = sorted(recipe.columns() | {ROW})
    have = set(lf.collect_schema().names())
    return evaluate(lf.select([c for c in needed if c in have]), recipe, str(collection.path))


# -- presets: the releases' rules that read metadata columns (REFERENCE.md §2) ------------------------
PRESETS: dict[str, dict] = {
    "laion400m": {
        "name": "laion400m",
        "description": "LAION-400M: alt-text >= 5 chars, exact (url, caption) dedup, ViT-B/32 similarity >= 0.30 "
                       "(the 5 KB image-size rule needs file sizes, which embedding shards do not carry)",
        "rules": [
            {"kind": "caption_length", "min_chars": 5},
            {"kind": "dedup_exact", "columns": ["url", "caption"]},
            {"kind": "column", "column": "similarity", "min": 0.30},
        ],
    },
    "laion2b-en": {
        "name": "laion2b-en",
        "description": "LAION-2B-en: alt-text >= 5 chars, exact (url, caption) dedup, ViT-B/32 similarity >= 0.28",
        "rules": [
            {"kind": "caption_length", "min_chars": 5},
            {"kind": "dedup_exact", "columns": ["url", "caption"]},
            {"kind": "column", "column": "similarity", "min": 0.28},
        ],
    },
    "datacomp-clip-score": {
        "name": "datacomp-clip-score",
        "description": "DataComp clip_score baseline: the top 30% by image-text similarity (use the ViT-L/14 "
                       "scores: open a DataComp pool with model l14)",
        "rules": [{"kind": "top_fraction", "column": "similarity", "fraction": 0.30}],
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
