"""Recipes: declarative rules over metadata and score columns, compiled to polars expressions.

A recipe is a list of rules. The key a rule starts with names its kind (one class per kind in
:mod:`workbench.curation.rules`, registered in :data:`~workbench.curation.rules.KINDS`, which this
module asks everything about a rule: settings, checks, name, columns, keep expression, scores and
thresholds); each rule keeps or removes rows by one criterion and has a stable, unique name (generated, or given with ``name:``). Applying a
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
the metadata lacks it) name a *score request*; :mod:`workbench.scoring.compute` computes those columns
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

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from workbench.curation.presets import PRESETS
from workbench.curation.rules import KINDS, ZERO_SHOT, RuleKind, head_column, kind_of
from workbench.curation.rules.base import BOUNDS as _BOUNDS
from workbench.curation.rules.base import fmt as _fmt
from workbench.errors import RecipeError
from workbench.io.schema import ROW

__all__ = ["KINDS", "MAX_DEPTH", "MAX_RECIPE_BYTES", "MAX_RULES", "PRESETS", "ZERO_SHOT", "Recipe", "Rule",
           "RuleKind", "Selection", "column_ranges", "evaluate", "head_column", "histogram", "preset",
           "require_kept", "rule_kind", "selection_warnings", "threshold_bounds"]
MAX_RECIPE_BYTES = 1 << 20  # 1 MiB
MAX_RULES = 10_000  # < 32,767: Selection.reason is int16
MAX_DEPTH = 16  # nesting of mappings/lists in a recipe file (a recipe needs 4)


# -- rules: each kind is a class of workbench.curation.rules (the registry KINDS) -------------------------
def rule_kind(d: dict) -> str:
    """The kind of a rule mapping: the first of its keys that names a kind."""
    return kind_of(d).key


@dataclass
class Rule:
    """One rule: ``params`` are the mapping as written in the recipe (without ``name``); ``kind`` is
    its kind's key and :attr:`spec` its kind's class (:mod:`workbench.curation.rules`), which every
    question about the rule is put to."""

    params: dict
    name: str = ""
    kind: str = ""

    def __post_init__(self):
        if not isinstance(self.params, dict):
            raise RecipeError(f"a rule is a mapping, got {self.params!r}")
        self.params = {k: v for k, v in self.params.items() if k != "name"}
        self.spec: type[RuleKind] = kind_of(self.params)
        self.kind = self.spec.key
        allowed = self.spec.allowed()
        unknown = set(self.params) - allowed
        if unknown:
            raise RecipeError(f"{self.kind}: unknown setting(s) {sorted(map(str, unknown))} "
                              f"(allowed: {sorted(allowed)})")
        self.spec.check(self.params)
        if not self.name:
            self.name = self.spec.name(self.params)

    @classmethod
    def parse(cls, d) -> "Rule":
        if not isinstance(d, dict):
            raise RecipeError(f"a rule is a mapping such as {{column: similarity, min: 0.28}}, got {d!r}")
        name = d.get("name", "")
        if not isinstance(name, str):
            raise RecipeError("a rule's name must be a string")
        return cls(dict(d), name)

    @property
    def default_name(self) -> str:
        """The name the rule's kind gives it (a rule given no ``name:`` has it)."""
        return self.spec.name(self.params)

    def columns(self) -> set[str]:
        return set(self.spec.columns(self.params))

    def score_requests(self) -> list[dict]:
        """The score columns this rule reads that must be computed (empty for metadata rules)."""
        return self.spec.score_requests(self.params)

    def threshold_column(self) -> str | None:
        """The numeric column this rule's thresholds compare (threshold kinds only), else None."""
        return self.spec.threshold_column(self.params)

    def keep(self, base: Path | None = None) -> pl.Expr:
        """True where the row passes this rule (nulls count as failing); `base`: the folder relative
        files (word lists) resolve against (the recipe file's)."""
        return self.spec.keep(self.params, base).fill_null(False)

    def to_dict(self) -> dict:
        d = dict(self.params)
        if self.name != self.default_name:
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
        if self.base is not None:  # each kind names the settings that hold file paths (RuleKind.file_params)
            dest = path.resolve().parent
            d["rules"] = [r.spec.relocate(rd, self.base, dest) for r, rd in zip(self.rules, d["rules"])]
        if path.suffix == ".json":
            text = json.dumps(d, indent=2) + "\n"
        else:
            import yaml

            text = yaml.safe_dump(d, sort_keys=False, allow_unicode=True)
        from workbench.io.files import write_text_atomic

        write_text_atomic(path, text)

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


# -- results that could mislead: warnings, and the refusal of an empty export --------------------------
def threshold_bounds(rule: Rule) -> list[tuple[str, str, float]]:
    """(column, bound, value) of each threshold (min/max/above/below) a threshold rule has (its kind's
    :meth:`~workbench.curation.rules.base.RuleKind.threshold_column`)."""
    column = rule.threshold_column()
    if column is None:
        return []
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


def preset(name: str) -> Recipe:
    if name not in PRESETS:
        raise RecipeError(f"unknown preset {name!r} (known: {', '.join(PRESETS)})")
    return Recipe.from_dict(PRESETS[name])


def histogram(values, bins: int = 64, value_range: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Counts and bin edges of the finite values (nulls and NaN left out)."""
    v = np.asarray(pl.Series(values).drop_nulls().cast(pl.Float64).to_numpy())
    v = v[np.isfinite(v)]
    return np.histogram(v, bins=bins, range=value_range)
