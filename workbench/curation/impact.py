"""Who a filter removes: per map cluster, the rows a recipe removes and what each rule removes alone,
with a binomial interval on each cluster's removed share, so that a small cluster is not over-read.

    from workbench.curation.impact import impact_table
    t = impact_table(clusters, removed, fails, labels, rule_names)   # one row per cluster

    ws.cluster_impact()                     # the same for a Workspace's live recipe (the map's clusters)
    workbench apply RECIPE SRC --dry-run --json --by-cluster    # the same for a collection

Clusters are the map's k-means clusters (:class:`workbench.map.clusters.ClusterScorer`, computed or
read from the score cache) with their caption-word labels (:func:`workbench.map.clusters.label_clusters`).
A row without a valid embedding has no k-means cluster: such rows are counted in cluster
:data:`NO_CLUSTER` (-1, labelled :data:`NO_CLUSTER_LABEL`), so that every row is in exactly one
cluster and the per-cluster counts sum to the recipe's totals.

The interval is Wilson's score interval at 95% (:func:`wilson_interval`). A cluster's
``departure`` is the signed gap between its interval and the overall removed share: 0 when the
interval holds the overall share (the cluster's share cannot be told apart from the overall one),
positive when even the interval's low end is above it (the recipe removes more of this cluster),
negative when even its high end is below it.
"""
from __future__ import annotations

import numpy as np
import polars as pl

from workbench.errors import WorkbenchError
from workbench.io.schema import ROW

NO_CLUSTER = -1  # the cluster of rows without a valid embedding (k-means gives them none)
NO_CLUSTER_LABEL = "(no valid embedding)"
Z95 = 1.959963984540054  # the standard normal's 97.5% quantile: a two-sided 95% interval
IMPACT_SCHEMA = {"cluster": pl.Int64, "label": pl.Utf8, "rows": pl.Int64, "removed": pl.Int64,
                 "removed_share": pl.Float64, "share_low": pl.Float64, "share_high": pl.Float64,
                 "departure": pl.Float64, "rules": pl.List(pl.Int64)}


def wilson_interval(k, n, z: float = Z95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson's score interval for the binomial share k/n (arrays; n > 0): (low, high), within [0, 1].

    Unlike the normal approximation it stays inside [0, 1] and is wide for small n: 1 removed of 2
    rows gives (0.09, 0.91), 500 of 1,000 gives (0.47, 0.53)."""
    k = np.asarray(k, np.float64)
    n = np.asarray(n, np.float64)
    if np.any(n <= 0) or np.any(k < 0) or np.any(k > n):
        raise WorkbenchError("a binomial interval needs 0 <= k <= n and n > 0")
    p = k / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * np.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    lo = np.where(k == 0, 0.0, np.clip(centre - half, 0.0, 1.0))  # exact ends: 0 of n, n of n
    hi = np.where(k == n, 1.0, np.clip(centre + half, 0.0, 1.0))
    return lo, hi


def cluster_ids(clusters) -> np.ndarray:
    """int64 cluster id per row from an array or a polars Series; null, NaN and negative ids (rows
    without a valid embedding) become :data:`NO_CLUSTER`."""
    if isinstance(clusters, pl.Series):
        clusters = clusters.cast(pl.Float64).fill_null(np.nan).to_numpy()
    cl = np.asarray(clusters)
    if cl.ndim != 1:
        raise WorkbenchError(f"clusters must be one id per row, got shape {cl.shape}")
    if cl.dtype.kind == "f":
        cl = np.where(np.isfinite(cl), cl, NO_CLUSTER)
    out = cl.astype(np.int64)
    out[out < 0] = NO_CLUSTER
    return out


def with_no_cluster(labels: dict, clusters: np.ndarray) -> dict:
    """`labels` (cluster id -> words) with :data:`NO_CLUSTER_LABEL` for :data:`NO_CLUSTER` when some
    row has no cluster, and "" for any cluster id `labels` lacks."""
    out = {int(c): str(labels.get(int(c), "") or "") for c in np.unique(clusters)}
    if NO_CLUSTER in out:
        out[NO_CLUSTER] = NO_CLUSTER_LABEL
    return out


def cluster_index(clusters) -> tuple[np.ndarray, np.ndarray]:
    """(the cluster ids, ascending; each row's position among them): :func:`cluster_ids` then
    ``np.unique(..., return_inverse=True)``. Worth keeping when the same clusters are counted again."""
    ids, idx = np.unique(cluster_ids(clusters), return_inverse=True)
    return ids, idx.reshape(-1).astype(np.int64)


def impact_table(clusters, removed, fails, labels: dict, rule_names, index=None) -> pl.DataFrame:
    """One row per cluster of `clusters` (an id per row, :func:`cluster_ids`): ``cluster``,
    ``label`` (from `labels`), ``rows``, ``removed`` (rows of the cluster `removed`, a bool per
    row, marks), ``removed_share``, ``share_low`` and ``share_high`` (:func:`wilson_interval`),
    ``departure`` (module docstring) and ``rules`` (per rule, in order: the cluster's rows it
    removes alone, i.e. fails; `fails` yields one bool array per rule, one at a time, so that only
    one is held). Sorted by ``abs(departure)`` descending, ties by cluster ascending. An empty
    `clusters` gives an empty table. `index`: :func:`cluster_index` of `clusters`, when known."""
    ids, idx = index if index is not None else cluster_index(clusters)
    removed = np.asarray(removed, bool)
    if len(removed) != len(idx):
        raise WorkbenchError(f"clusters ({len(idx)}) and the removed mask ({len(removed)}) must be aligned, one per row")
    names = list(rule_names)
    m = len(ids)
    per_rule = np.zeros((m, len(names)), np.int64)
    for i, fail in enumerate(fails):
        if i >= len(names):
            raise WorkbenchError(f"more rule masks than rule names ({len(names)})")
        fail = np.asarray(fail, bool)
        if len(fail) != len(idx):
            raise WorkbenchError(f"rule {names[i]!r}: {len(fail)} values for {len(idx)} rows")
        per_rule[:, i] = np.bincount(idx[fail], minlength=m)
    return _table(ids, np.bincount(idx, minlength=m), np.bincount(idx[removed], minlength=m), per_rule, labels)


def pattern_impact(index, packed: np.ndarray, labels: dict, k: int) -> pl.DataFrame:
    """:func:`impact_table` from the live counts' fail patterns (``Live.packed``: bit i set = rule
    i of `k` removes the row) and a :func:`cluster_index`: one counting pass over (cluster,
    pattern) pairs when those fit in 2**22 bins, else one pass per rule."""
    ids, idx = index
    m = len(ids)
    if len(packed) != len(idx):
        raise WorkbenchError(f"clusters ({len(idx)}) and fail patterns ({len(packed)}) must be aligned, one per row")
    if (m << k) > 1 << 22:
        return impact_table(None, packed != 0, pattern_fails(packed, k), labels, [str(i) for i in range(k)], index)
    counts = np.bincount((idx << k) + packed, minlength=m << k).reshape(m, 1 << k)
    patterns = np.arange(1 << k)
    per_rule = np.stack([counts[:, (patterns >> i) & 1 == 1].sum(axis=1) for i in range(k)], axis=1) if k \
        else np.zeros((m, 0), np.int64)
    return _table(ids, counts.sum(axis=1), counts[:, 1:].sum(axis=1), per_rule, labels)


def _table(ids, rows, gone, per_rule, labels: dict) -> pl.DataFrame:
    if not len(ids):
        return pl.DataFrame(schema=IMPACT_SCHEMA)
    rows, gone = rows.astype(np.int64), gone.astype(np.int64)
    share = gone / rows
    lo, hi = wilson_interval(gone, rows)
    overall = float(gone.sum() / rows.sum())
    departure = np.where(lo > overall, lo - overall, np.where(hi < overall, hi - overall, 0.0))
    lab = with_no_cluster(labels, ids)
    order = np.lexsort((ids, -np.abs(departure)))
    return pl.DataFrame({
        "cluster": ids[order], "label": [lab[int(c)] for c in ids[order]], "rows": rows[order],
        "removed": gone[order], "removed_share": share[order], "share_low": lo[order], "share_high": hi[order],
        "departure": departure[order], "rules": [per_rule[j].astype(np.int64).tolist() for j in order],
    }, schema=IMPACT_SCHEMA)


def impact_records(table: pl.DataFrame, rule_names) -> list[dict]:
    """The table of :func:`impact_table` as JSON-ready dicts (its order): cluster, label, rows,
    removed, removed_share, share_low, share_high, departure, and ``rules`` as
    ``[{"rule": name, "removed_alone": n}, ...]`` in recipe order (what ``apply --by-cluster`` prints)."""
    names = list(rule_names)
    out = []
    for r in table.iter_rows(named=True):
        rec = {k: r[k] for k in ("cluster", "label", "rows", "removed", "removed_share", "share_low", "share_high",
                                 "departure")}
        rec["rules"] = [{"rule": n, "removed_alone": int(a)} for n, a in zip(names, r["rules"])]
        out.append(rec)
    return out


def selection_fails(sel):
    """Per rule of a :class:`~workbench.curation.recipe.Selection`, in order: the bool array "this
    rule removes the row", unpacked one rule at a time from its fail bits."""
    n = len(sel.rows)
    for i in range(len(sel.rule_names)):
        if sel.fail_bits is None or not sel.alone[i]:
            yield np.zeros(n, bool)
        else:
            yield np.unpackbits(sel.fail_bits[i], count=n).astype(bool)


def pattern_fails(packed: np.ndarray, k: int):
    """Per rule i < `k`: bit i of the live counts' fail patterns (``Live.packed``), as bool arrays."""
    for i in range(k):
        yield (packed & np.uint16(1 << i)) != 0


def collection_clusters(collection, rows, k: int | None = None, cache: bool = True, progress: bool = False):
    """The map's clusters of the row ids `rows` (:class:`~workbench.map.clusters.ClusterScorer`,
    computed or read from the cache; :data:`NO_CLUSTER` for rows without one), aligned with `rows`
    whatever order they come in, and their labels (cluster id -> caption words; "" without captions)."""
    from workbench.map.clusters import ClusterScorer, label_clusters
    from workbench.scoring.compute import compute

    rows = np.asarray(rows, np.int64)
    res = compute(collection, [ClusterScorer(k=k)], cache=cache, progress=progress).collect()
    names = collection.metadata.collect_schema().names()
    extra = ["caption"] if "caption" in names else []
    meta = collection.metadata.select(ROW, *extra).collect()
    key = pl.DataFrame({ROW: rows}, schema={ROW: pl.Int64})
    joined = (key.join(res.select(pl.col(ROW).cast(pl.Int64), "cluster"), on=ROW, how="left", maintain_order="left")
              .join(meta.with_columns(pl.col(ROW).cast(pl.Int64)), on=ROW, how="left", maintain_order="left"))
    cl = cluster_ids(joined["cluster"])
    caps = joined["caption"] if extra else pl.Series([None] * len(cl), dtype=pl.Utf8)
    return cl, with_no_cluster(label_clusters(cl, caps), cl)


def selection_impact(collection, sel, k: int | None = None, cache: bool = True) -> list[dict]:
    """Per map cluster of `collection`, what the :class:`~workbench.curation.recipe.Selection`
    `sel` removes (:func:`impact_records` of :func:`impact_table`): what ``workbench apply
    --by-cluster`` adds as ``clusters``."""
    cl, labels = collection_clusters(collection, sel.rows, k=k, cache=cache)
    table = impact_table(cl, ~sel.mask, selection_fails(sel), labels, sel.rule_names)
    return impact_records(table, sel.rule_names)


# -- a Workspace's clusters (what its cluster_* methods call) ------------------------------------------
def workspace_clusters(ws, k: int | None = None) -> tuple[np.ndarray, dict]:
    """(cluster id per row of the workspace's live counts, labels) for :class:`Workspace` `ws`: its
    map clusters (:meth:`Workspace.clusters`), labelled and indexed once and kept on the workspace."""
    return workspace_cluster_cache(ws, k)[:2]


def workspace_cluster_cache(ws, k: int | None = None):
    """(cluster ids, labels, :func:`cluster_index`) of the workspace's map clusters, made once and
    kept on the workspace (the clusters never change once the workspace has them)."""
    from workbench.map.clusters import label_clusters

    raw = ws.clusters(k)
    cached = getattr(ws, "_cluster_cache", None)
    if cached is not None and len(cached[0]) == len(raw):
        return cached
    if len(raw) != len(ws.live.rows):
        raise WorkbenchError(f"the map's clusters ({len(raw)} rows) and the live counts ({len(ws.live.rows)}) differ")
    cl = cluster_ids(raw)
    names = ws.collection.metadata.collect_schema().names()
    caps = ws.collection.metadata.select("caption").collect()["caption"] if "caption" in names \
        else pl.Series([None] * len(cl), dtype=pl.Utf8)
    ws._cluster_cache = (cl, with_no_cluster(label_clusters(cl, caps), cl), cluster_index(cl))
    return ws._cluster_cache


def workspace_impact(ws, k: int | None = None) -> pl.DataFrame:
    """:func:`impact_table` of the workspace's live recipe over its map clusters (from the live
    fail patterns: :func:`pattern_impact`)."""
    _, labels, index = workspace_cluster_cache(ws, k)
    return pattern_impact(index, ws.live.packed, labels, len(ws.recipe.rules))


def workspace_members(ws, cluster: int, removed_only: bool = False, limit: int | None = None) -> np.ndarray:
    """Row ids (ascending) of map cluster `cluster` (:data:`NO_CLUSTER`: rows without one); with
    `removed_only`, only those the live recipe removes; at most `limit` (the lowest row ids)."""
    cl, _ = workspace_clusters(ws)
    hit = cl == int(cluster)
    if removed_only:
        hit &= ws.live.packed != 0
    rows = ws.live.rows[np.flatnonzero(hit)]
    return rows if limit is None else rows[:max(int(limit), 0)]
