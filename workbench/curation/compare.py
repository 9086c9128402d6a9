"""Recipe against recipe: which rows two recipes keep, in four sets, per rule and per map cluster,
with a sample of each set to look at.

    ws.compare("datacomp-basic")                           # the workspace's recipe (A) against a preset (B)
    compare_recipes(c, recipe_a, recipe_b)                 # two recipes over a collection
    workbench diff RECIPE_A RECIPE_B SRC --json            # the same from the command line

The four sets partition the rows: ``both`` (kept by A and by B), ``only_a`` (kept by A, removed by
B), ``only_b`` (kept by B, removed by A) and ``neither`` (removed by both). Clusters are the map's
(:mod:`workbench.curation.impact`: rows without a valid embedding are cluster -1).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from workbench.curation.impact import NO_CLUSTER, cluster_index, collection_clusters, workspace_cluster_cache
from workbench.curation.recipe import PRESETS, Recipe, evaluate, preset
from workbench.errors import NoEmbeddingsError, WorkbenchError
from workbench.io.schema import ROW

SETS = ("both", "only_a", "only_b", "neither")


def resolve_recipe(other) -> Recipe:
    """A :class:`Recipe` from a Recipe, a preset name (unless a file of that name exists), a recipe
    file's path (.yaml/.json) or a dict (:meth:`Recipe.from_dict`)."""
    if isinstance(other, Recipe):
        return other
    if isinstance(other, dict):
        return Recipe.from_dict(other)
    if isinstance(other, (str, Path)):
        if str(other) in PRESETS and not Path(other).exists():
            return preset(str(other))
        if not Path(other).exists():
            raise WorkbenchError(f"no such recipe file, and not a preset (presets: {', '.join(PRESETS)})", other)
        return Recipe.load(other)
    raise WorkbenchError(f"a recipe is a Recipe, a preset name, a file or a dict, not {type(other).__name__}")


def selection_counts(sel, name: str) -> dict:
    """The :meth:`Workspace.counts`-style dict of a Selection: recipe, rows, kept, removed, rules
    (rule, removed_alone, removed_in_order, remaining)."""
    return {"recipe": name, "rows": len(sel.rows), "kept": sel.kept, "removed": sel.removed,
            "rules": sel.counts().to_dicts()}


def compare_masks(kept_a, kept_b, rows, clusters, labels: dict, sample: int = 12, seed: int = 0, index=None) -> dict:
    """The four sets of two kept masks over the row ids `rows` (all aligned, one per row): ``rows``,
    ``both``, ``only_a``, ``only_b``, ``neither`` (counts), ``clusters`` (per cluster of
    `clusters`, ascending: cluster, label, rows and the four counts) and ``samples`` (per set, up to
    `sample` row ids drawn without replacement with `seed`, ascending). `index`: the
    :func:`~workbench.curation.impact.cluster_index` of `clusters`, when known."""
    a = np.asarray(kept_a, bool)
    b = np.asarray(kept_b, bool)
    rows = np.asarray(rows, np.int64)
    cl = np.asarray(clusters, np.int64)
    if not (len(a) == len(b) == len(rows) == len(cl)):
        raise WorkbenchError(f"kept masks ({len(a)}, {len(b)}), rows ({len(rows)}) and clusters ({len(cl)}) "
                             "must be aligned")
    if sample < 0:
        raise WorkbenchError(f"sample must be >= 0, got {sample}")
    masks = {"both": a & b, "only_a": a & ~b, "only_b": ~a & b, "neither": ~a & ~b}
    ids, idx = index if index is not None else cluster_index(cl)
    per = {s: np.bincount(idx[m], minlength=len(ids)) for s, m in masks.items()}
    sizes = np.bincount(idx, minlength=len(ids))
    out = {"rows": int(len(rows)), **{s: int(m.sum()) for s, m in masks.items()}}
    out["clusters"] = [{"cluster": int(c), "label": str(labels.get(int(c), "")), "rows": int(sizes[j]),
                        **{s: int(per[s][j]) for s in SETS}} for j, c in enumerate(ids)]
    rng = np.random.default_rng(seed)
    samples = {}
    for s in SETS:
        members = rows[masks[s]]
        pick = rng.choice(len(members), size=min(sample, len(members)), replace=False) if len(members) else []
        samples[s] = sorted(int(r) for r in members[np.asarray(pick, np.int64)])
    out["samples"] = samples
    return out


def workspace_compare(ws, other, sample: int = 12, seed: int = 0, progress=None) -> dict:
    """The workspace's current recipe (A) against `other` (B; :func:`resolve_recipe`) over every row
    of the workspace: :func:`compare_masks` plus ``a`` and ``b`` (each recipe's counts). B's missing
    columns are computed (or read from the cache) into the workspace's frame; its live counts and
    recipe are left as they were."""
    recipe_b = resolve_recipe(other)
    ws._ensure_columns(recipe_b, progress)
    counts_a = ws.counts()
    counts_a = {"recipe": ws.recipe.name, **{k: counts_a[k] for k in ("rows", "kept", "removed", "rules")}}
    kept_a = ws.kept_mask()
    rows = ws.live.rows
    sel_b = evaluate(ws.frame, recipe_b, str(ws.collection.path))
    kept_b = _aligned(rows, sel_b)
    cl, labels, index = workspace_cluster_cache(ws)
    out = compare_masks(kept_a, kept_b, rows, cl, labels, sample, seed, index)
    return {**out, "a": counts_a, "b": selection_counts(sel_b, recipe_b.name)}


def _aligned(rows: np.ndarray, sel) -> np.ndarray:
    """`sel`'s kept mask at the row ids `rows` (ascending), whatever order `sel` holds them in."""
    order = np.argsort(sel.rows, kind="stable")
    srt = sel.rows[order]
    pos = np.searchsorted(srt, rows)
    if len(srt) != len(rows) or not np.array_equal(srt[np.minimum(pos, len(srt) - 1)], rows):
        raise WorkbenchError("the two recipes were evaluated over different rows")
    return sel.mask[order][pos]


def compare_recipes(collection, recipe_a, recipe_b, sample: int = 12, seed: int = 0, k: int | None = None,
                    encoder=None, cache: bool = True, device: str = "auto", progress: bool = False) -> dict:
    """Two recipes (each :func:`resolve_recipe`) applied to `collection`
    (:func:`workbench.curation.apply.apply`, scores computed or read from the cache) and compared:
    :func:`compare_masks` over the map's clusters, plus ``a`` and ``b`` (each recipe's counts),
    ``source``, and ``captions`` (per set, the captions of its sample, in the same order; absent
    when the collection has no captions), ``warnings`` (each recipe's, and, for a collection without
    image embeddings, that there are no map clusters: every row is then in cluster -1). Captions are
    raw web text: escape them when rendering."""
    from workbench.curation.apply import apply, needs_text_encoder
    from workbench.models.prompts import resolve_encoder

    ra, rb = resolve_recipe(recipe_a), resolve_recipe(recipe_b)
    enc = resolve_encoder(encoder) if (needs_text_encoder(ra) or needs_text_encoder(rb)) else None
    sel_a = apply(collection, ra, encoder=enc, cache=cache, progress=progress, device=device)
    sel_b = apply(collection, rb, encoder=enc, cache=cache, progress=progress, device=device)
    rows = np.sort(sel_a.rows)
    kept_a, kept_b = _aligned(rows, sel_a), _aligned(rows, sel_b)
    warnings = [f"A ({ra.name}): {w}" for w in sel_a.warnings] + [f"B ({rb.name}): {w}" for w in sel_b.warnings]
    try:
        cl, labels = collection_clusters(collection, rows, k=k, cache=cache, progress=progress)
    except NoEmbeddingsError as exc:  # the four sets need no map: every row in cluster -1, said
        cl, labels = np.full(len(rows), NO_CLUSTER, np.int64), {NO_CLUSTER: "(no map clusters)"}
        warnings.append(f"no per-cluster counts: {' '.join(str(exc).split())}")
    out = compare_masks(kept_a, kept_b, rows, cl, labels, sample, seed)
    out = {"source": str(collection.path), **out, "a": selection_counts(sel_a, ra.name),
           "b": selection_counts(sel_b, rb.name), "warnings": warnings}
    if "caption" in collection.metadata.collect_schema().names():
        wanted = sorted({r for s in SETS for r in out["samples"][s]})
        caps = collection.metadata.filter(pl.col(ROW).is_in(wanted)).select(ROW, "caption").collect()
        by_row = dict(zip(caps[ROW].to_list(), caps["caption"].to_list()))
        out["captions"] = {s: [by_row.get(r) for r in out["samples"][s]] for s in SETS}
    return out
