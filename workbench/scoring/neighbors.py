"""Nearest neighbours: "more like this" for a row, an image or a text, as top-k rows with scores.

This module works with vectors (the caller turns a text or an image into one with an encoder, or
takes a row's own embedding with :func:`row_query`). Scores are cosine similarities: queries and
embeddings are normalised to unit length.

Two ways to search, one output contract (``scores`` float32 and ``rows`` int64, both ``(q, k)``,
each query's hits by descending score, ties by the lower row id; a query with fewer than ``k``
eligible rows is padded with row ``-1`` and score ``-inf``):

- :func:`exact_search` streams the collection's embeddings chunk by chunk (never all in memory)
  and keeps a running top-k per query: exact, the default up to ``exact_below`` rows (2M);
- :func:`workbench.scoring.faissindex.index_search` asks a faiss index (building, finding and loading
  indexes is :mod:`workbench.scoring.faissindex`'s).

:func:`search` is the notebook/CLI entry point: it picks the method
(:func:`workbench.scoring.faissindex.resolve_index`, which refuses an index that does not match the
collection), optionally re-scores the index's candidates exactly, and returns a polars DataFrame
with ``url`` and ``caption`` joined (:func:`results_frame`).

Invalid rows (NaN/inf/zero-norm embeddings, ``EmbeddingChunk.valid`` False) are never returned:
exact search masks them, and :func:`workbench.scoring.faissindex.build_index` leaves them out of the index.

torch (exact search) and faiss (indexes) are imported only when used.
"""
from __future__ import annotations

import math
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import polars as pl

from workbench.errors import WorkbenchError
from workbench.scoring.faissindex import (EXACT_BELOW, _check_k, _check_kind, _embedding_dim, _exclude, _order, _prepare_queries,
                         index_search, resolve_index)


# -- exact search -------------------------------------------------------------------------------
EXACT_CHUNK_ROWS = 262_144
SUB_BLOCK_BYTES = 4 << 20  # float32 rows converted at a time (per thread): stays in cache between norm and matmul
SCORE_BLOCK_BYTES = 64 << 20  # at most this much (q, rows) float32 scores between two top-k steps


def _score_block(qt, block: np.ndarray, bufs: list, pool, torch):
    """Cosine of every query with every row of a stored (n, d) block: (q, n) float32, invalid rows -inf.

    Rows are converted to float32 a sub-block at a time (torch's fp16 conversion is vectorised,
    numpy's is not), and each sub-block's norms and dot products are taken while it is in cache.
    Sub-blocks are spread over `pool`'s threads, one buffer each, torch itself on one thread: no
    barrier per operation, which on a shared machine cost 2-10x. A row is invalid when its norm is
    not finite or not above 1e-12, as in :func:`workbench.io.kernels.normalize_rows`.
    """
    n = len(block)
    out = torch.empty((qt.shape[0], n), dtype=torch.float32)
    sub = bufs[0].shape[0]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        src = torch.from_numpy(np.asarray(block))  # a read-only memmap: only ever read here
    starts = list(range(0, n, sub))

    def work(t: int) -> None:
        buf = bufs[t]
        for s in starts[t :: len(bufs)]:
            m = min(sub, n - s)
            x = buf[:m]
            x.copy_(src[s : s + m])
            norms = torch.linalg.vector_norm(x, dim=1)
            part = out[:, s : s + m]
            if qt.shape[0] == 1:
                torch.matmul(qt, x.T, out=part)
            else:
                part.copy_(qt @ x.T)
            part.div_(norms)
            bad = ~(torch.isfinite(norms) & (norms > 1e-12))
            if bad.any():
                part[:, bad] = -math.inf

    if pool is None or len(starts) < 2:
        for t in range(len(bufs)):
            work(t)
    else:
        list(pool.map(work, range(len(bufs))))
    return out


def exact_search(collection, queries: np.ndarray, k: int = 10, kind: str = "image",
                 chunk_rows: int = EXACT_CHUNK_ROWS, exclude_rows=None) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by cosine over all of the collection's `kind` embeddings.

    `queries` is a (d,) vector or a (q, d) array (normalised here). The stored embeddings are read
    in chunks of `chunk_rows` rows (fewer when many queries: the (q, rows) score block stays under
    64 MB), never all at once; within a chunk, 4 MB sub-blocks are converted to float32, and their
    norms and dot products with the queries (torch matmul) computed while in cache. Each chunk's
    scores go through ``torch.topk`` and are merged into a running top-k. Rows in `exclude_rows`
    (global ids, excluded for every query) and invalid rows (NaN/inf/zero-norm) are never returned.

    Returns ``(scores, rows)``, float32 and int64, both (q, k): by descending score, ties (equal
    float32 scores, e.g. duplicate embeddings) by the lower row id; when fewer than k rows are
    eligible the rest is row -1 with score -inf.
    """
    k = _check_k(k)
    dim = _embedding_dim(collection, kind)
    q = _prepare_queries(queries, dim, f"the collection's {kind} embeddings")
    if chunk_rows < 1:
        raise WorkbenchError(f"chunk_rows must be positive, not {chunk_rows}")
    import torch

    nq = len(q)
    best_s = np.full((nq, k), -np.inf, np.float32)
    best_r = np.full((nq, k), -1, np.int64)
    if nq == 0 or len(collection) == 0:
        return best_s, best_r
    excl = _exclude(exclude_rows)
    qt = torch.from_numpy(q)
    sub = max(256, SUB_BLOCK_BYTES // (4 * dim))
    step = int(min(chunk_rows, max(sub, SCORE_BLOCK_BYTES // (4 * nq))))
    threads = max(1, torch.get_num_threads())
    bufs = [torch.empty((min(sub, step), dim), dtype=torch.float32) for _ in range(threads)]
    pool = ThreadPoolExecutor(threads) if threads > 1 else None
    torch.set_num_threads(1)
    try:
        best_s, best_r = _exact_chunks(collection, kind, step, qt, bufs, pool, excl, k, best_s, best_r, torch)
    finally:
        torch.set_num_threads(threads)
        if pool is not None:
            pool.shutdown()
    return best_s, best_r


def _exact_chunks(collection, kind, step, qt, bufs, pool, excl, k, best_s, best_r, torch):
    for ch in collection.iter_embeddings(kind, chunk_rows=step, normalize=False):
        n = len(ch.data)
        if n == 0:
            continue
        s = _score_block(qt, ch.data, bufs, pool, torch)  # (nq, n) cosine, invalid rows -inf
        lo, hi = np.searchsorted(excl, [ch.start, ch.start + n])
        if hi > lo:
            s[:, torch.from_numpy(excl[lo:hi] - ch.start)] = -math.inf
        kk = min(k, n)
        vals, idx = torch.topk(s, kk, dim=1, largest=True, sorted=False)
        vals, idx = vals.numpy(), idx.numpy().astype(np.int64)
        # torch.topk picks among equal scores arbitrarily: where a tie straddles the k-th place
        # (duplicate embeddings are common in LAION), keep the lowest rows, as the contract says
        kth = vals.min(axis=1)
        tied_all = (s == torch.from_numpy(kth)[:, None]).sum(dim=1).numpy()
        tied_kept = (vals == kth[:, None]).sum(axis=1)
        for i in np.nonzero((tied_all > tied_kept) & np.isfinite(kth))[0]:
            row = s[i].numpy()
            cand = np.nonzero(row >= kth[i])[0]
            cand = cand[np.argsort(-row[cand], kind="stable")[:kk]]
            idx[i], vals[i] = cand, row[cand]
        rows = np.where(np.isfinite(vals), idx + ch.start, -1)
        best_s, best_r = _order(np.concatenate([best_s, vals], 1), np.concatenate([best_r, rows], 1), k)
    return best_s, best_r


# -- search: the entry point and its DataFrame ----------------------------------------------------
def _rescore(collection, q: np.ndarray, rows: np.ndarray, kind: str, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine for index candidates, re-ranked; invalid rows dropped."""
    have = rows >= 0
    uniq, inv = np.unique(rows[have], return_inverse=True)
    emb = collection.take_embeddings(uniq, kind) if len(uniq) else np.zeros((0, q.shape[1]), np.float32)
    scores = np.full(rows.shape, -np.inf, np.float32)
    qi = np.nonzero(have)[0]
    s = np.einsum("ij,ij->i", emb[inv], q[qi]).astype(np.float32)
    valid = np.einsum("ij,ij->i", emb, emb)[inv] > 0.5
    scores[have] = np.where(valid, s, -np.inf)
    return _order(scores, np.where(np.isfinite(scores), rows, -1), k)


def search(collection, query, k: int = 10, kind: str = "image", index="auto", nprobe: int | None = None,
           exact_below: int = EXACT_BELOW, exclude_rows=None, rerank: int = 4) -> pl.DataFrame:
    """Top-k rows like `query` (a (d,) vector or a (q, d) array), as a DataFrame.

    Method (see :func:`workbench.scoring.faissindex.resolve_index`): exact up to `exact_below` rows, else a
    faiss index found beside the collection; or the index given (path or faiss.Index);
    ``index=None`` forces exact.
    With an index and the collection's own embeddings at hand, ``rerank * k`` candidates are taken
    from the index and re-scored exactly (scores are then true cosine; ``rerank=0`` keeps the
    index's approximate scores). Rows in `exclude_rows` are never returned (pass the query row for
    "more like this").

    Columns: ``query`` (Int32, position in `query`), ``rank`` (Int32, 1 = best), ``row`` (Int64),
    ``score`` (Float32, cosine), then ``url`` and ``caption`` when the metadata has them. Padding
    (fewer eligible rows than k) is left out.
    """
    k = _check_k(k)
    _check_kind(kind)
    has = collection.has_embeddings if kind == "image" else collection.has_text_embeddings
    if has:
        q = _prepare_queries(query, int(collection.dim), f"the collection's {kind} embeddings")
    resolved = resolve_index(collection, kind, index, exact_below)
    if resolved is None:
        scores, rows = exact_search(collection, q if has else query, k, kind, exclude_rows=exclude_rows)
    else:
        idx, _ = resolved
        if not has:
            q = _prepare_queries(query, int(idx.d), "the index's vectors")
        fetch = k * max(int(rerank), 1) if has else k
        scores, rows = index_search(idx, q, fetch, nprobe=nprobe, exclude_rows=exclude_rows)
        if rows.size and rows.max() >= len(collection):
            raise WorkbenchError(f"the index returned row {int(rows.max()):,}, the collection has {len(collection):,} "
                                 "rows: it was not built for this collection", resolved[1])
        if has and rerank:
            scores, rows = _rescore(collection, q, rows, kind, k)
        else:
            scores, rows = scores[:, :k], rows[:, :k]
    return results_frame(collection, scores, rows)


def results_frame(collection, scores: np.ndarray, rows: np.ndarray) -> pl.DataFrame:
    """(q, k) scores and rows as the DataFrame :func:`search` returns (padding dropped, metadata joined)."""
    nq, k = rows.shape
    keep = rows.ravel() >= 0
    df = pl.DataFrame({
        "query": pl.Series(np.repeat(np.arange(nq), k)[keep], dtype=pl.Int32),
        "rank": pl.Series(np.tile(np.arange(1, k + 1), nq)[keep], dtype=pl.Int32),
        "row": pl.Series(rows.ravel()[keep], dtype=pl.Int64),
        "score": pl.Series(scores.ravel()[keep], dtype=pl.Float32),
    })
    meta = _metadata_for(collection, np.unique(rows[rows >= 0]))
    if meta is not None:
        df = df.join(meta, on="row", how="left").sort(["query", "rank"])
    return df


def _metadata_for(collection, rows: np.ndarray) -> pl.DataFrame | None:
    """``row``, ``url``, ``caption`` (those present) of the given rows, reading as little as possible.

    Only the shards holding the rows are opened, only the needed columns, and only around the
    rows: a few rows are read as one-row slices (polars skips to their pages: ~1 ms each, where
    a LAION shard's one 1M-row row group takes 100+ ms to decode), many through the row groups
    holding them. img2dataset shards, whose row ids count successful rows only, go through the
    collection's lazy frame, filtered on ``row``.
    """
    wanted = [c for c in ("url", "caption") if c in collection.columns]
    if not wanted:
        return None
    schema = {"row": pl.Int64, **{c: pl.Utf8 for c in wanted}}
    frames = [pl.DataFrame(schema=schema)]
    if len(rows):
        rows = np.unique(rows)
        shard = collection.shard_of(rows)
        for i in np.unique(shard):
            frames.append(_shard_rows(collection, int(i), rows[shard == i], wanted).select(
                pl.col("row").cast(pl.Int64), *[pl.col(c).cast(pl.Utf8, strict=False) for c in wanted]))
    return pl.concat(frames, how="vertical_relaxed")


SLICE_RUNS_MAX = 32  # up to this many runs of consecutive rows in a shard: one slice each


def _shard_rows(collection, i: int, rows: np.ndarray, wanted: list[str]) -> pl.DataFrame:
    """`wanted` columns (canonical names) of sorted global `rows` of shard `i`, with ``row``."""
    s = collection.shards[i]
    offset = int(collection.offsets[i])
    if s.metadata is None or s.success_only or s.schema is None:
        lf = collection.shard_metadata(i)
        names = lf.collect_schema().names()
        return (lf.filter(pl.col("row").is_in(rows.tolist()))
                .select(pl.col("row"), *[pl.col(c) if c in names else pl.lit(None, pl.Utf8).alias(c) for c in wanted])
                .collect())
    from workbench.io.schema import canonical_mapping

    mapping = canonical_mapping(s.schema.names, getattr(collection._layout, "prefer", None))
    originals = {c: mapping[c] for c in wanted if c in mapping}
    cols = sorted(set(originals.values()))
    if not cols:
        return pl.DataFrame({"row": rows, **{c: pl.Series([None] * len(rows), dtype=pl.Utf8) for c in wanted}})
    local = rows - offset
    exprs = [pl.col(originals[c]).alias(c) if c in originals else pl.lit(None, pl.Utf8).alias(c) for c in wanted]
    breaks = np.nonzero(np.diff(local) != 1)[0] + 1
    runs = np.split(local, breaks)
    if len(runs) <= SLICE_RUNS_MAX:
        parts = [pl.scan_parquet(s.metadata).select(cols).slice(int(r[0]), len(r)).collect() for r in runs]
        table = pl.concat(parts, how="vertical_relaxed")
    else:
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(s.metadata)
        sizes = [pf.metadata.row_group(g).num_rows for g in range(pf.metadata.num_row_groups)]
        starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        group = np.searchsorted(starts, local, side="right") - 1
        parts = []
        for g in np.unique(group):
            t = pf.read_row_group(int(g), columns=cols).take(local[group == g] - starts[g])
            parts.append(pl.from_arrow(t))
        table = pl.concat(parts, how="vertical_relaxed")
    return table.select(*exprs).with_columns(pl.Series("row", rows, dtype=pl.Int64))


def row_query(collection, row: int, kind: str = "image") -> np.ndarray:
    """The unit embedding (float32, (d,)) of global row `row`: the query for "more like this".

    Pass ``exclude_rows=[row]`` to the search so the row does not find itself.
    """
    _embedding_dim(collection, kind)
    n = len(collection)
    if isinstance(row, bool) or not isinstance(row, (int, np.integer)):
        raise WorkbenchError(f"a row id must be an integer, not {row!r}")
    if not 0 <= int(row) < n:
        raise WorkbenchError(f"row {row} is out of range: the collection has {n:,} rows", collection.path)
    v = collection.take_embeddings(np.array([int(row)]), kind)[0]
    if not np.any(v):
        raise WorkbenchError(f"its {kind} embedding is not usable (NaN, inf or zero)", collection.path, row=int(row))
    return v


def query_vector(collection, row: int | None = None, text: str | None = None, image=None, embedding=None,
                 kind: str = "image", encoder=None, model: str | None = None, pretrained: str | None = None,
                 device: str = "auto") -> tuple[np.ndarray, list[int] | None]:
    """The query of a neighbours search, from exactly one of: `row` (that row's own embedding,
    :func:`row_query`; the row itself is to be left out), `text` (embedded by `encoder`: an
    encoder, a zero-argument callable giving one, or None: the collection's own text tower),
    `image` (an image file, embedded by the image tower of the open_clip `model` [/`pretrained`]
    on `device`; no `model` is refused), `embedding` (a ``.npy`` vector of the collection's dim).

    Returns (the query vector(s), the rows to exclude: ``[row]`` or None), ready for
    :func:`search`. Anything but exactly one query raises :class:`WorkbenchError`."""
    given = [x for x in (row, text, image, embedding) if x is not None]
    if len(given) != 1:
        raise WorkbenchError("give exactly one of --row, --text, --image, --embedding")
    if row is not None:
        return row_query(collection, row, kind), [row]
    if embedding is not None:
        from workbench.models.prompts import load_prompt_embedding

        return load_prompt_embedding(embedding, collection.dim), None
    if text is not None:
        from workbench.models.prompts import resolve_encoder

        return resolve_encoder(encoder, collection).encode_text([text]), None
    from workbench.models.encoders import load_encoder, parse_model_spec

    if not model:
        raise WorkbenchError("--image needs the image tower of the collection's model: pass --model (and --pretrained)")
    name, tag = (model, pretrained) if pretrained else parse_model_spec(model)
    enc = load_encoder(name, tag, device=device)
    return np.asarray(enc.encode_images([image])), None


def neighbors(collection, *, row: int | None = None, text: str | None = None, image=None, embedding=None,
              k: int = 10, kind: str = "image", index="auto", nprobe: int | None = None, encoder=None,
              model: str | None = None, pretrained: str | None = None, device: str = "auto") -> pl.DataFrame:
    """The `k` rows nearest to one query (`row`, `text`, `image` or `embedding`: see
    :func:`query_vector`), as :func:`search`'s frame; a `row` query leaves the row itself out.
    ``index="exact"`` (or None) forces the exact search. The CLI's ``neighbors`` verb is this call."""
    q, exclude = query_vector(collection, row=row, text=text, image=image, embedding=embedding, kind=kind,
                              encoder=encoder, model=model, pretrained=pretrained, device=device)
    return search(collection, q, k=k, kind=kind, index=None if index == "exact" else index, nprobe=nprobe,
                  exclude_rows=exclude)
