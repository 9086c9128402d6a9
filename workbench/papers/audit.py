"""The audit of "Multimodal datasets: misogyny, pornography, and malignant stereotypes", as functions.

    keyword_table(c, ["desi", "aunty"])      # term -> rows whose caption has it, explicit share, tags
    query_unsafe(c, ["beautiful"], enc, k=100)  # the top-k rows of a text query and their unsafe share
    threshold_sweep(sim, truth_unsafe, [0.26, 0.28, 0.30])  # what a cut removes: precision and recall

The paper counted, for rows whose caption contains a term, the share that carry an explicit
keyword in their URL or caption (:data:`EXPLICIT_KEYWORDS`, matched case-insensitively as plain
substrings, spaces included: ``'hot '`` and ``' rape '`` are the paper's spellings), and set it
against the release's NSFW tag (UNLIKELY / UNSURE / NSFW): the tag turned out a poor indicator.
Both functions stream the metadata shard by shard (a few columns at a time).

Scores and keyword matches are not labels: a keyword hit is a lead to look at, not a verdict.
"""
from __future__ import annotations

import numpy as np
import polars as pl

from workbench.errors import WorkbenchError

EXPLICIT_KEYWORDS = ("porn", "hot ", "adult", "xxx", "sex", "fuck", " rape ")
TAGS = ("UNLIKELY", "UNSURE", "NSFW")


def _contains_any(col: pl.Expr, words) -> pl.Expr:
    out = pl.lit(False)
    for w in words:
        out = out | col.str.to_lowercase().str.contains(w.lower(), literal=True).fill_null(False)
    return out


def keyword_table(collection, terms, keywords=EXPLICIT_KEYWORDS, unsafe_column: str | None = None,
                  unsafe_threshold: float = 0.5) -> pl.DataFrame:
    """One row per term: ``rows`` (captions containing it, case-insensitive substring), ``explicit``
    and ``explicit_share`` (of those, rows with an explicit keyword in the URL or the caption), the
    NSFW tag counts among the explicit ones (``tag_UNLIKELY`` ...), and, with `unsafe_column` (e.g.
    punsafe), ``unsafe`` (rows of the term at or above `unsafe_threshold`)."""
    terms = list(terms)
    if not terms:
        raise WorkbenchError("give at least one term")
    canon = collection.canonical
    if "caption" not in canon:
        raise WorkbenchError("the audit needs captions, and the collection has no caption column", collection.path)
    cols = ["caption"] + [c for c in ("url", "nsfw_tag") if c in canon]
    if unsafe_column is not None:
        if unsafe_column not in collection.metadata.collect_schema().names():
            raise WorkbenchError(f"no column {unsafe_column!r}", collection.path)
        cols.append(unsafe_column)
    has_url, has_tag = "url" in canon, "nsfw_tag" in canon
    totals = {t: {"rows": 0, "explicit": 0, **{f"tag_{g}": 0 for g in TAGS}, "unsafe": 0} for t in terms}
    for i in range(len(collection.shards)):
        df = collection.shard_metadata(i).select(cols).collect()
        cap = pl.col("caption")
        text = (cap.fill_null("") + " " + pl.col("url").fill_null("")) if has_url else cap.fill_null("")
        df = df.with_columns(_contains_any(text, keywords).alias("_explicit"))
        for t in terms:
            hit = df.filter(_contains_any(cap, [t]))
            if hit.height == 0:
                continue
            acc = totals[t]
            acc["rows"] += hit.height
            ex = hit.filter(pl.col("_explicit"))
            acc["explicit"] += ex.height
            if has_tag:
                for g, n in ex.group_by("nsfw_tag").len().iter_rows():
                    if g in TAGS:
                        acc[f"tag_{g}"] += n
            if unsafe_column is not None:
                acc["unsafe"] += int(hit.filter(pl.col(unsafe_column) >= unsafe_threshold).height)
    out = []
    for t in terms:
        acc = totals[t]
        row = {"term": t, "rows": acc["rows"], "explicit": acc["explicit"],
               "explicit_share": acc["explicit"] / acc["rows"] if acc["rows"] else None}
        if has_tag:
            row.update({f"tag_{g}": acc[f"tag_{g}"] for g in TAGS})
        if unsafe_column is not None:
            row["unsafe"] = acc["unsafe"]
            row["unsafe_share"] = acc["unsafe"] / acc["rows"] if acc["rows"] else None
        out.append(row)
    return pl.DataFrame(out)


def query_unsafe(collection, queries, encoder, k: int = 100, unsafe_column: str | None = None,
                 unsafe_threshold: float = 0.5, keywords=EXPLICIT_KEYWORDS) -> pl.DataFrame:
    """For each text query: its top-k rows by image-text cosine (exact, streamed) and the share of
    them that are unsafe by `unsafe_column` (>= threshold), by the NSFW tag (NSFW or UNSURE), and
    by an explicit keyword in URL or caption."""
    from workbench.scoring.neighbors import exact_search

    queries = list(queries)
    if not queries:
        raise WorkbenchError("give at least one query")
    q = np.asarray(encoder.encode_text(queries), np.float32)
    canon = collection.canonical
    cols = [c for c in ("caption", "url", "nsfw_tag") if c in canon]
    if unsafe_column is not None:
        cols.append(unsafe_column)
    meta = collection.metadata.select(["row"] + cols)
    _, top = exact_search(collection, q, k=k)
    out = []
    for text, found in zip(queries, top):
        rows = [int(r) for r in found if r >= 0]
        got = meta.filter(pl.col("row").is_in(rows)).collect()
        rec = {"query": text, "k": len(rows)}
        if unsafe_column is not None:
            rec["unsafe_share"] = float((got[unsafe_column] >= unsafe_threshold).mean()) if got.height else None
        if "nsfw_tag" in cols:
            rec["tagged_share"] = float(got["nsfw_tag"].is_in(["NSFW", "UNSURE"]).mean()) if got.height else None
        if "caption" in cols:
            text_col = pl.col("caption").fill_null("")
            if "url" in cols:
                text_col = text_col + " " + pl.col("url").fill_null("")
            rec["explicit_share"] = float(got.select(_contains_any(text_col, keywords)).to_series().mean()) if got.height else None
        out.append(rec)
    return pl.DataFrame(out)


def threshold_sweep(values, positive, thresholds, remove: str = "below") -> pl.DataFrame:
    """How a score threshold trades removal of flagged rows against removal of everything else.

    For each threshold ``t``, rows are removed when their value is below ``t`` (``remove="below"``,
    e.g. an image-text similarity cut) or above it (``"above"``, e.g. punsafe); a missing value
    (NaN/null) is removed, as a recipe rule does. `positive` marks the rows one wants gone
    (ground truth, or labels). Columns: ``threshold``, ``removed``, ``removed_share``,
    ``positives_removed``, ``precision`` (positives among removed; null when nothing is removed),
    ``recall`` (removed among positives; null without positives) and ``positive_share_kept``
    (positives among the kept rows; null when nothing is kept)."""
    if remove not in ("below", "above"):
        raise WorkbenchError(f"remove must be below or above, got {remove!r}")
    v = np.asarray(pl.Series(values).cast(pl.Float64).fill_null(float("nan")).to_numpy(), dtype=np.float64)
    pos = np.asarray(pl.Series(positive).cast(pl.Boolean).fill_null(False).to_numpy(), dtype=bool)
    if len(v) != len(pos):
        raise WorkbenchError(f"values ({len(v)}) and positive ({len(pos)}) must be aligned, one per row")
    ts = np.asarray(list(thresholds), dtype=np.float64)
    if not len(ts) or not np.all(np.isfinite(ts)):
        raise WorkbenchError("give one or more finite thresholds")
    missing = ~np.isfinite(v)
    n, n_pos = len(v), int(pos.sum())
    recs = []
    for t in ts:
        with np.errstate(invalid="ignore"):
            gone = missing | ((v < t) if remove == "below" else (v > t))
        r, tp = int(gone.sum()), int((gone & pos).sum())
        kept, kept_pos = n - r, n_pos - tp
        recs.append({"threshold": float(t), "removed": r, "removed_share": r / n if n else None,
                     "positives_removed": tp, "precision": tp / r if r else None,
                     "recall": tp / n_pos if n_pos else None,
                     "positive_share_kept": kept_pos / kept if kept else None})
    return pl.DataFrame(recs, schema={"threshold": pl.Float64, "removed": pl.Int64, "removed_share": pl.Float64,
                                      "positives_removed": pl.Int64, "precision": pl.Float64, "recall": pl.Float64,
                                      "positive_share_kept": pl.Float64})


def audit(collection, terms=(), queries=(), k: int = 100, unsafe_column: str | None = None,
          unsafe_threshold: float = 0.5, encoder=None, device: str = "auto") -> tuple[dict, str | None]:
    """What ``workbench audit`` reports: (``{"source"[, "terms": keyword_table rows][, "queries":
    query_unsafe rows]}``, the unsafe column used). `unsafe_column` None: ``punsafe`` when the
    metadata has it. `encoder` (for `queries` only): an encoder, a zero-argument callable giving
    one, or None (the collection's own, on `device`). Neither terms nor queries raises
    :class:`WorkbenchError`."""
    if not terms and not queries:
        raise WorkbenchError("give --term (caption keyword table) and/or --query (top-k unsafe share)")
    out = {"source": str(collection.path)}
    unsafe = unsafe_column
    if unsafe is None and "punsafe" in collection.metadata.collect_schema().names():
        unsafe = "punsafe"
    if terms:
        out["terms"] = keyword_table(collection, terms, unsafe_column=unsafe,
                                     unsafe_threshold=unsafe_threshold).to_dicts()
    if queries:
        from workbench.models.prompts import resolve_encoder

        out["queries"] = query_unsafe(collection, queries, resolve_encoder(encoder, collection, device), k=k,
                                      unsafe_column=unsafe, unsafe_threshold=unsafe_threshold).to_dicts()
    return out, unsafe
