"""A curation session in code: the collection, the recipe being edited, live counts, the map's
points, the gallery's rows, labels and probes, and export. The notebook widgets are a view of a
:class:`Workspace`; everything they do can be done by calling it.

    ws = Workspace(c, preset("laion2b-en"))
    ws.set_bounds(2, min=0.30)            # live: counts without touching embeddings
    i = ws.add_prompt("a watermark", max=0.25)   # one embedding pass (cached), then live
    ws.select(rows); ws.drop_selection()  # a lasso becomes a drop_rows rule
    ws.label([3, 9], "watermark"); ws.train_probe("watermark")
    ws.export("/data/subset")

Only the columns the rules read (and a few slider candidates) are held in memory, one value per row.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from workbench.errors import WorkbenchError
from workbench.curation.live import Live, _threshold_column
from workbench.curation.recipe import PRESETS, Recipe, Rule, preset
from workbench.io.schema import ROW

SLIDER_COLUMNS = ("similarity", "punsafe", "pwatermark", "aesthetic")  # shown as sliders when present
UNSAFE_HEADS = ("head_nsfw-l14", "head_nsfw-b32")
# the recipe a panel opens with when given none: the rules whose column the collection has
DEFAULT_RULES = ({"column": "similarity", "min": 0.28}, {"column": "punsafe", "below": 0.5},
                 {"column": "pwatermark", "below": 0.8})
PROBE_THRESHOLD = 0.5  # a probe flags a row when its score is >= this; its rule keeps scores below it
DEDUP_RULES = {"exact": {"dedup": "exact"},  # the on/off dedup rules, by mode
               "semantic": {"dedup": "semantic", "threshold": 0.94}}
SLIDER_BOUNDS = ("min", "above", "max", "below")  # a threshold rule's slider moves the first it has


@dataclass
class MapData:
    rows: np.ndarray  # the rows drawn (a stratified sample), int64
    x: np.ndarray
    y: np.ndarray
    cluster: np.ndarray  # per drawn row
    labels: dict  # cluster id -> words
    method: str  # "umap" (cached) or "pca" (a quick first view)
    total: int  # rows in the collection


class Workspace:
    def __init__(self, collection, recipe: Recipe | str | None = None, encoder=None, device: str = "auto",
                 cache: bool = True):
        from workbench.io.collection import Collection, open_collection

        self.collection = collection if isinstance(collection, Collection) else open_collection(collection)
        self.encoder, self.device, self.cache = encoder, device, cache
        if isinstance(recipe, str):
            recipe = preset(recipe) if recipe in PRESETS else Recipe.load(recipe)
        recipe = recipe or Recipe([], "my-subset")
        names = set(self.collection.metadata.collect_schema().names())
        base = [ROW] + [c for c in SLIDER_COLUMNS if c in names]
        self.frame = self.collection.metadata.select(base).collect()
        self.labels: dict[int, str] = {}
        self.selection = np.zeros(0, np.int64)
        self.probes: dict[str, object] = {}
        self._ensure_columns(recipe)
        self.live = Live(self.frame, recipe)

    # -- the recipe ------------------------------------------------------------------------------
    @property
    def recipe(self) -> Recipe:
        return self.live.recipe

    def _add_columns(self, new: pl.DataFrame) -> None:
        """Add (or replace) `new`'s columns, matched on ``row``: ``self.frame`` stays one line per row
        id in row order (position = row id, which :meth:`clusters`, :meth:`top_by` and the gallery
        rely on), whatever order `new` is in."""
        cols = [c for c in new.columns if c != ROW]
        self.frame = self.frame.drop(cols, strict=False).join(new.select(ROW, *cols), on=ROW, how="left",
                                                              maintain_order="left")

    def _ensure_columns(self, recipe: Recipe, progress=None) -> None:
        """Load (metadata) or compute (scores) the columns `recipe` reads that the frame lacks."""
        from workbench.curation.columns import recipe_frame

        have = set(self.frame.columns)
        missing = recipe.columns() - have
        if not missing:
            return
        meta = set(self.collection.metadata.collect_schema().names())
        from_meta = sorted(missing & meta)
        if from_meta:
            self._add_columns(self.collection.metadata.select(ROW, *from_meta).collect())
        lf, report = recipe_frame(self.collection, recipe, self.encoder, cache=self.cache, progress=progress,
                                  device=self.device, skip=set(self.frame.columns))
        if report:  # scores computed (or read from cache): add the new ones
            new = [c for c in lf.collect_schema().names() if c not in meta and c not in self.frame.columns]
            self._add_columns(lf.select(ROW, *new).collect())
        still = sorted(recipe.columns() - set(self.frame.columns))
        if still:
            raise WorkbenchError(f"the recipe needs column(s) {still}, which this collection lacks", self.collection.path)

    def _rebuild(self, recipe: Recipe, progress=None) -> None:
        self._ensure_columns(recipe, progress)
        self.live = Live(self.frame, recipe)

    def set_recipe(self, recipe: Recipe | str, progress=None) -> None:
        if isinstance(recipe, str):
            recipe = preset(recipe) if recipe in PRESETS else Recipe.load(recipe)
        self._rebuild(recipe, progress)

    def add_rule(self, rule: dict | Rule, progress=None) -> int:
        """Append a rule (computing any score column it needs, with `progress`); its index."""
        rule = rule if isinstance(rule, Rule) else Rule.parse(rule)
        names = {r.name for r in self.recipe.rules}
        base, k = rule.name, 2
        while rule.name in names:
            rule = Rule(rule.params, f"{base} ({k})")
            k += 1
        self._rebuild(Recipe([*self.recipe.rules, rule], self.recipe.name, self.recipe.description,
                             self.recipe.base), progress)
        return len(self.recipe.rules) - 1

    def remove_rule(self, index: int) -> None:
        rules = [r for i, r in enumerate(self.recipe.rules) if i != index]
        self._rebuild(Recipe(rules, self.recipe.name, self.recipe.description, self.recipe.base))

    def set_bounds(self, index: int, **bounds) -> dict:
        """Change a threshold rule's bounds; the new counts (with that rule's histogram)."""
        self.live.set_bounds(index, **bounds)
        return self.counts(histogram_of=index)

    def prepare_slider(self, index: int) -> bool:
        """Get threshold rule `index` ready to be dragged (its slider tile, on large collections:
        :meth:`workbench.curation.live.Live.grab`), so that its first move costs what the next do."""
        return self.live.grab(index)

    def threshold_rules(self) -> list[tuple[int, str]]:
        """(index, column) of the rules a slider can move."""
        return [(i, c) for i, r in enumerate(self.recipe.rules) if (c := _threshold_column(r))]

    def value_range(self, column: str) -> tuple[float, float]:
        """(least, greatest) edge of `column`'s histogram bins (its finite values' range, as the
        live counts bin it): the span a slider on that column covers."""
        edges = self.live.edges(column)
        return float(edges[0]), float(edges[-1])

    def sliders(self) -> list[dict]:
        """One entry per threshold rule (:meth:`threshold_rules` order): ``index``, ``column``,
        ``bound`` (the first of min/above/max/below the rule has: the one its slider moves, with
        :meth:`set_bounds`), ``value`` (that bound, clipped to the range), ``low``, ``high``
        (:meth:`value_range`)."""
        out = []
        for index, column in self.threshold_rules():
            params = self.recipe.rules[index].params
            bound = next(k for k in SLIDER_BOUNDS if k in params)
            lo, hi = self.value_range(column)
            out.append({"index": index, "column": column, "bound": bound,
                        "value": float(np.clip(float(params[bound]), lo, hi)), "low": lo, "high": hi})
        return out

    def default_histogram(self) -> int | None:
        """The rule whose histogram a fresh view shows: the first threshold rule, else None."""
        rules = self.threshold_rules()
        return rules[0][0] if rules else None

    def rankable_rules(self) -> list[tuple[int, str]]:
        """(index, column) of the rules whose column is a per-row score a gallery can show the top
        of (:meth:`top_by` that column): the rules whose kind declares itself rankable (prompts
        and heads)."""
        out = []
        for i, r in enumerate(self.recipe.rules):
            if r.spec.rankable:
                out.append((i, r.threshold_column() or sorted(r.columns())[0]))
        return out

    def score_columns(self) -> list[str]:
        """The numeric per-row columns held (metadata sliders and computed scores; not ``row`` nor
        ``cluster``): what a map can be coloured by and a gallery item shows."""
        return [c for c in self.frame.columns if c not in (ROW, "cluster") and self.frame[c].dtype.is_numeric()]

    def scores(self) -> dict[str, np.ndarray]:
        """:meth:`score_columns` as float arrays over all rows (nulls as NaN)."""
        return {c: self.frame[c].cast(pl.Float64).fill_null(np.nan).to_numpy() for c in self.score_columns()}

    def add_prompt(self, text: str, max: float | None = None, min: float | None = None, progress=None) -> int:
        """A prompt rule (default: drop rows scoring above the 99th percentile): one embedding pass, cached."""
        if not text or not text.strip():
            raise WorkbenchError("a prompt needs some text")
        rule = {"prompt": text.strip(), **({"max": max} if max is not None else {}), **({"min": min} if min is not None else {})}
        if max is None and min is None:
            col = Rule.parse({**rule, "max": 1.0}).columns().pop()
            self._score_only({**rule, "max": 1.0}, progress)
            v = self.frame[col].drop_nulls().to_numpy()
            rule["max"] = float(np.round(np.quantile(v, 0.99), 4)) if len(v) else 1.0
        return self.add_rule(rule, progress)

    def _score_only(self, rule: dict, progress=None) -> str:
        r = Rule.parse(rule)
        self._ensure_columns(Recipe([r]), progress)
        return next(iter(r.columns()))

    def use_preset(self, name: str, progress=None) -> None:
        self.set_recipe(preset(name), progress)

    @staticmethod
    def presets() -> list[str]:
        """The names :meth:`use_preset` takes (:data:`workbench.curation.recipe.PRESETS`)."""
        return list(PRESETS)

    def default_recipe(self) -> Recipe:
        """The recipe a panel opens with when given none: "my-subset" with, of :data:`DEFAULT_RULES`
        (similarity >= 0.28, punsafe < 0.5, pwatermark < 0.8), the rules whose column this
        collection has; no rules when it has none of them. (``Workspace(c)`` itself starts empty.)"""
        have = set(self.frame.columns) | set(self.collection.metadata.collect_schema().names())
        return Recipe.from_dict({"name": "my-subset",
                                 "rules": [dict(r) for r in DEFAULT_RULES if r["column"] in have]})

    # -- dedup toggles ---------------------------------------------------------------------------
    @staticmethod
    def dedup_rule(mode: str) -> dict:
        """The rule a dedup toggle adds: ``"exact"`` (first of rows with equal url + caption) or
        ``"semantic"`` (one row per near-duplicate component, cosine >= 0.94)."""
        if mode not in DEDUP_RULES:
            raise WorkbenchError(f"dedup mode must be one of {sorted(DEDUP_RULES)}, not {mode!r}")
        return dict(DEDUP_RULES[mode])

    def dedup_index(self, mode: str) -> int | None:
        """Index of the recipe's first dedup rule of `mode` (any threshold or columns), else None."""
        kind = self.dedup_rule(mode)["dedup"]
        return next((i for i, r in enumerate(self.recipe.rules) if r.params.get("dedup") == kind), None)

    def set_dedup(self, mode: str, on: bool, progress=None) -> bool:
        """Turn dedup `mode` on (append :meth:`dedup_rule` unless the recipe has such a rule) or off
        (remove the first such rule). True when the recipe changed."""
        i = self.dedup_index(mode)
        if on and i is None:
            self.add_rule(self.dedup_rule(mode), progress)
            return True
        if not on and i is not None:
            self.remove_rule(i)
            return True
        return False

    # -- counts ----------------------------------------------------------------------------------
    def counts(self, histogram_of: int | None = None) -> dict:
        return self.live.counts(histogram_of=histogram_of)

    def kept_mask(self, rows=None) -> np.ndarray:
        """Kept or not, per row id (all rows, or the row ids `rows` only: then a slider drag's
        bounds are tested on those rows alone, no pass over the collection)."""
        if rows is None:
            return self.live.packed == 0
        idx = np.searchsorted(self.live.rows, np.asarray(rows, dtype=np.int64))
        return self.live.patterns_at(idx) == 0

    def warnings(self, counts: dict | None = None) -> list[str]:
        """What in the current outcome may mislead (a threshold outside every value of its column, a
        rule that removes every row): :func:`workbench.curation.recipe.selection_warnings`, as ``apply`` prints."""
        from workbench.curation.recipe import column_ranges, selection_warnings

        return selection_warnings(self.recipe, counts or self.counts(), column_ranges(self.frame, self.recipe))

    def first_reason(self) -> np.ndarray:
        """Per row: index of the first rule that removes it, -1 when kept."""
        return self.live.first_reason()

    # -- selection (lasso) -----------------------------------------------------------------------
    def select(self, rows) -> np.ndarray:
        self.selection = np.unique(np.asarray(list(rows), dtype=np.int64))
        return self.selection

    def _row_rule(self, kind: str, label: str) -> int:
        if not len(self.selection):
            raise WorkbenchError("nothing is selected: draw a lasso on the map first")
        return self.add_rule(Rule({kind: self.selection.tolist()}, f"{label} {len(self.selection):,} selected rows"))

    def drop_selection(self) -> int:
        return self._row_rule("drop_rows", "drop")

    def keep_selection(self) -> int:
        return self._row_rule("keep_rows", "keep only")

    # -- the map ---------------------------------------------------------------------------------
    def _projection_scorer(self, progress=None, **params):
        from workbench.map.projection import ProjectionScorer

        return ProjectionScorer(progress=progress, **params)

    def projection_cached(self, **params) -> bool:
        from workbench.scoring.scorecache import ScoreCache

        s = self._projection_scorer(**params)
        s.prepare(self.collection)
        cache = ScoreCache(self.collection, s.column, s.spec())
        return all(cache.state(i) == "fresh" for i in range(len(self.collection.shards)))

    def compute_projection(self, progress=None, subprocess: bool = False, **params) -> pl.DataFrame:
        """UMAP positions of every row (fit on a sample, the rest placed), cached beside the collection.

        With ``subprocess`` the work runs in another process (:meth:`start_projection`: a notebook
        kernel stays responsive, its GIL free), `progress` is called as its reports arrive, and the
        result is read back from the cache."""
        from workbench.scoring.compute import compute

        if subprocess:
            self.start_projection(**params).wait(progress=progress)
        res = compute(self.collection, [self._projection_scorer(progress=progress, **params)], cache=self.cache)
        return res.collect()

    def start_projection(self, **params):
        """Start the UMAP map in another process and return its
        :class:`~workbench.map.projection.ProjectionJob` (poll it, wait for it, cancel it). It leaves
        the same cached map as ``workbench map SRC`` with these parameters; once it is done,
        :meth:`map_data` with ``projection="umap"`` (or ``"auto"``) draws it."""
        from workbench.map.projection import start_projection_job

        return start_projection_job(self.collection, **params)

    def density(self, window=None, size=None, **params):
        """The density raster of *every* row on the UMAP map (kept and removed counts per pixel:
        :class:`workbench.map.density.Raster`) for `window` ``(x0, x1, y0, y1)`` (None: the whole
        map) at `size` (width, height); None while the map is not computed (the quick PCA view
        places only the drawn rows). A repaint after a slider move is one pass over every row's
        pixel and fail pattern (the drag's pending bounds included), never a kept mask."""
        from workbench.map.density import DEFAULT_SIZE, DensityMap

        size = tuple(size or DEFAULT_SIZE)
        key = (size, tuple(sorted(params.items())))
        dm = getattr(self, "_density", {}).get(key)
        if dm is None:
            if not self.projection_cached(**params):
                return None
            pos = self.compute_projection(**params)  # row order: the live counts' order
            dm = DensityMap(pos["map_x"].to_numpy(), pos["map_y"].to_numpy(), size)
            self._density = {key: dm}
        with self.live.lock:
            dm.set_window(window)
            packed, mask, pending = self.live.kept_inputs()
            tile = self.live._tile if pending is not None else None
            key = (dm, dm.window, self.live, tile)  # compared by identity: the same map, window, counts and drag
            last = getattr(self, "_raster", None)
            r = None
            if tile is not None and last is not None and last[0] == key and last[1] is not None:
                r = dm.update(last[2], tile, last[1], pending[1:])  # only the rows the move flipped
            if r is None:
                r = dm.raster(packed, mask, pending)
            self._raster = (key, pending[1:] if pending is not None else None, r)
            return r

    def clusters(self, k: int | None = None) -> np.ndarray:
        from workbench.map.clusters import ClusterScorer
        from workbench.scoring.compute import compute

        if "cluster" not in self.frame.columns:
            res = compute(self.collection, [ClusterScorer(k=k)], cache=self.cache).collect()
            self._add_columns(res.select(ROW, "cluster"))
        return self.frame["cluster"].to_numpy()

    def map_data(self, max_points: int = 200_000, projection: str = "auto", seed: int = 0, **params) -> MapData:
        """The points to draw: a sample stratified over clusters, at UMAP positions when cached
        (``projection="auto"``) or computed (``"umap"``), else a quick PCA of the drawn rows."""
        from workbench.map.clusters import label_clusters, stratified_sample
        from workbench.map.projection import pca_2d

        clusters = self.clusters()
        rows = stratified_sample(clusters, max_points=max_points, seed=seed)
        if projection == "umap" or (projection == "auto" and self.projection_cached(**params)):
            pos = self.compute_projection(**params)
            xy = pos.select("map_x", "map_y").to_numpy()[rows]
            method = "umap"
        else:
            xy = pca_2d(self.collection.take_embeddings(rows))
            method = "pca"
        caps = self.collection.metadata.select("caption").collect()["caption"] \
            if "caption" in self.collection.metadata.collect_schema().names() else [None] * len(clusters)
        labels = label_clusters(clusters, caps)
        return MapData(rows, xy[:, 0].astype(np.float32), xy[:, 1].astype(np.float32), clusters[rows], labels,
                       method, len(self.collection))

    # -- who the recipe removes, and recipe against recipe (workbench.curation.impact, .compare) --
    def cluster_impact(self, k: int | None = None) -> pl.DataFrame:
        """Per map cluster (:meth:`clusters`; -1: rows without a valid embedding): cluster, label, rows,
        removed, removed_share, its 95% Wilson interval (share_low, share_high), departure from the
        overall share (0 inside the interval) and rules (rows each rule removes alone), sorted by
        abs(departure) descending: :func:`workbench.curation.impact.impact_table`."""
        from workbench.curation.impact import workspace_impact

        return workspace_impact(self, k)

    def cluster_members(self, cluster: int) -> np.ndarray:
        """Row ids (ascending) of map cluster `cluster`."""
        from workbench.curation.impact import workspace_members

        return workspace_members(self, cluster)

    def cluster_removed(self, cluster: int, limit: int = 48) -> np.ndarray:
        """Row ids of the rows of map cluster `cluster` the recipe removes: the first `limit` by row id."""
        from workbench.curation.impact import workspace_members

        return workspace_members(self, cluster, removed_only=True, limit=limit)

    def compare(self, other, sample: int = 12, seed: int = 0, progress=None) -> dict:
        """This recipe (A) against `other` (B: a Recipe, preset name, path or dict): rows kept by both,
        only A, only B, neither; each recipe's counts; per cluster; a sample of each set
        (:func:`workbench.curation.compare.workspace_compare`). The live recipe is left as it is."""
        from workbench.curation.compare import workspace_compare

        return workspace_compare(self, other, sample, seed, progress)

    # -- the gallery -----------------------------------------------------------------------------
    def unsafe_threshold(self) -> tuple[str, float] | None:
        """The column and threshold above which a gallery blurs a row: the recipe's punsafe/NSFW-head
        rule when it has one, else punsafe at 0.5 when the collection has punsafe."""
        for r in self.recipe.rules:
            col = _threshold_column(r)
            if col in ("punsafe", *UNSAFE_HEADS):
                for k in ("below", "max"):
                    if k in r.params:
                        return col, float(r.params[k])
        if "punsafe" in self.frame.columns:
            return "punsafe", 0.5
        return None

    def removed_by(self, index: int, limit: int = 48) -> np.ndarray:
        rows = np.nonzero(self.first_reason() == index)[0]
        return self.live.rows[rows[:limit]]

    def top_by(self, column: str, limit: int = 48, descending: bool = True) -> np.ndarray:
        v = self.frame[column].cast(pl.Float64).fill_null(np.nan).to_numpy()
        v = np.where(np.isnan(v), -np.inf if descending else np.inf, v)
        idx = np.argsort(-v if descending else v, kind="stable")[:limit]
        return self.live.rows[idx]

    def prompt_top(self, text: str, limit: int = 48, progress=None) -> np.ndarray:
        """The rows scoring highest on a prompt (the column is computed once, cached)."""
        col = self._score_only({"prompt": text.strip(), "max": 1.0}, progress)
        return self.top_by(col, limit)

    def gallery(self, rows, limit: int = 48, allow_remote: bool = False, size: int = 160) -> list[dict]:
        """Items for a gallery: row, caption (raw web text: escape it when rendering), url, the rule
        columns' values, kept, first reason, unsafe (above the current threshold), and a JPEG thumbnail."""
        from workbench.io.thumbnails import thumbnail

        rows = np.asarray(list(rows), dtype=np.int64)[:limit]
        if not len(rows):
            return []
        meta_cols = [c for c in ("caption", "url") if c in self.collection.metadata.collect_schema().names()]
        meta = self.collection.metadata.filter(pl.col(ROW).is_in(rows.tolist())).select([ROW, *meta_cols]).collect()
        by_row = {r[ROW]: r for r in meta.iter_rows(named=True)}
        score_cols = self.score_columns()
        idx = np.searchsorted(self.live.rows, rows)  # live.rows: every row id, ascending
        unsafe = self.unsafe_threshold()
        reasons = self.live.first_reason(idx)
        names = [r.name for r in self.recipe.rules]
        items = []
        for j, (r, i) in enumerate(zip(rows.tolist(), idx.tolist())):
            rec = by_row.get(r, {})
            scores = {c: self.frame[c][i] for c in score_cols}
            u = unsafe is not None and scores.get(unsafe[0]) is not None and scores[unsafe[0]] > unsafe[1]
            th = thumbnail(self.collection, r, rec.get("url"), size=size, allow_remote=allow_remote)
            items.append({"row": r, "caption": rec.get("caption"), "url": rec.get("url"), "scores": scores,
                          "kept": reasons[j] < 0, "reason": names[reasons[j]] if reasons[j] >= 0 else None,
                          "unsafe": bool(u), "label": self.labels.get(r), "thumbnail": th.jpeg,
                          "image_problem": th.problem})
        return items

    # -- labels and probes -----------------------------------------------------------------------
    def label(self, rows, name: str | None) -> None:
        """Give `rows` the label `name` (None removes their labels)."""
        for r in np.asarray(list(rows), dtype=np.int64).tolist():
            if name is None:
                self.labels.pop(r, None)
            else:
                self.labels[r] = name

    def train_probe(self, name: str, progress=None):
        """A probe for label `name` (positives: rows with it; negatives: rows with any other label, or
        random rows), saved beside the collection and added as the live score column ``head_<name>``
        (the name made file-safe); returns (probe, path, column). :meth:`add_probe_rule` makes it a rule."""
        from workbench.models.probe import train_probe
        from workbench.scoring.scorecache import cache_root
        from workbench.scoring.scorers import HeadScorer
        from workbench.scoring.compute import compute

        pos = [r for r, lab in self.labels.items() if lab == name]
        neg = [r for r, lab in self.labels.items() if lab != name]
        if not pos:
            raise WorkbenchError(f"no rows are labelled {name!r}")
        probe = train_probe(self.collection, pos, neg or None)
        slug = re.sub(r"[^0-9A-Za-z_-]+", "_", name)[:40] or "probe"
        path = cache_root(self.collection).parent / "probes" / f"{slug}.safetensors"
        path.parent.mkdir(parents=True, exist_ok=True)
        probe.save(path)
        col = f"head_{slug}"
        res = compute(self.collection, [HeadScorer(col, str(path))], cache=self.cache, progress=progress or False)
        self._add_columns(res.collect().select(ROW, col))
        self.probes[name] = (probe, path)
        return probe, path, col

    def probe_rule(self, name: str) -> dict:
        """The rule that drops what the probe trained for label `name` (:meth:`train_probe`) flags:
        ``{head: <its file>, below: PROBE_THRESHOLD, name: "probe <name> < 0.5"}``: a row is flagged
        when its probe score is >= :data:`PROBE_THRESHOLD` (0.5)."""
        if name not in self.probes:
            raise WorkbenchError(f"no probe is trained for {name!r}: train_probe({name!r}) first")
        path = self.probes[name][1]
        return {"head": str(path), "below": PROBE_THRESHOLD, "name": f"probe {name} < {PROBE_THRESHOLD:g}"}

    def add_probe_rule(self, name: str, progress=None) -> int:
        """Append :meth:`probe_rule` for `name`; its index."""
        return self.add_rule(self.probe_rule(name), progress)

    def flagged(self, name: str) -> np.ndarray:
        """Row ids (ascending) the probe for `name` flags: probe score >= :data:`PROBE_THRESHOLD`."""
        if name not in self.probes:
            raise WorkbenchError(f"no probe is trained for {name!r}: train_probe({name!r}) first")
        col = f"head_{Path(self.probes[name][1]).stem}"  # the column train_probe added
        v = self.frame[col].cast(pl.Float64).fill_null(np.nan).to_numpy()
        return self.live.rows[np.nonzero(v >= PROBE_THRESHOLD)[0]]

    # -- recipe files and export ---------------------------------------------------------------------
    def recipe_text(self) -> str:
        import yaml

        return yaml.safe_dump(self.recipe.to_dict(), sort_keys=False, allow_unicode=True)

    def save_recipe(self, path) -> Path:
        self.recipe.save(path)
        return Path(path)

    def load_recipe(self, path, progress=None) -> None:
        self.set_recipe(Recipe.load(path), progress)

    def export_formats(self) -> list[str]:
        """The output formats this collection can be written in (see :mod:`workbench.export.exporter`)."""
        from workbench.export.exporter import available_formats

        return available_formats(self.collection)

    def export(self, dst, rows_per_shard: int = 1_000_000, formats=("laion",), workers: int = 1, progress=False) -> dict:
        """Write the kept rows (source order, byte-identical) with the recipe in the manifest; returns
        the manifest. An unfinished export of the same rows into `dst` is resumed."""
        from workbench.curation.apply import apply_and_export
        from workbench.engine import LocalEngine

        c = self.counts()  # the live selection, written by the same path as `workbench apply ... DST`
        params = {"summary": {k: c[k] for k in ("rows", "kept", "removed")}, "rules": json.loads(json.dumps(c["rules"]))}
        with LocalEngine(workers) as engine:
            return apply_and_export(self.collection, self.recipe, dst, formats=formats, selection=self.live.selection(),
                                    parameters=params, rows_per_shard=rows_per_shard, engine=engine,
                                    progress=progress)["manifest"]
