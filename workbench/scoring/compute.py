"""The scoring engine: compute score columns over a collection, streamed by shard, cached beside it.

    from workbench.scoring.compute import compute
    res = compute(c, [PromptScorer("watermark", texts=["a watermark"])])
    res.frame            # polars LazyFrame: row + the score columns, over all rows
    res.report           # per scorer: shards computed, read from cache, found stale

Each shard's embeddings are read once for all the scorers that need them: row norms first (cached
too, so a second prompt costs one fp16 matrix-vector pass), then each scorer's chunk function.
Whole-collection scorers (semantic dedup) run once and are recomputed when any shard changed.

With an ``engine`` (:mod:`workbench.engine`) the per-shard work runs as one task per shard that has
work to do (:func:`_shard_task`, in a local process pool or on Ray): the task reads that shard's
embeddings once for all its pending scorers and writes their cache files itself; whole-collection
scorers still run here. The columns and cache files are the same with or without an engine.

A recipe is evaluated over these columns by :func:`workbench.curation.apply.apply`.
"""
from __future__ import annotations

import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from workbench.errors import WorkbenchError
from workbench.io.kernels import fused_dots, fused_dots_available, row_stats
from workbench.io.progress import CallbackBar, progress_bar
from workbench.io.schema import ROW
from workbench.scoring.scorecache import ScoreCache, cache_root
from workbench.scoring.scorers import ChunkView, Scorer

CHUNK_ROWS = 131072


class _NormScorer(Scorer):
    """Row norms and validity of stored embeddings: the shared first step of every embedding scorer."""

    def __init__(self, kind: str):
        self.kind = kind
        self.column = f"_norm_{kind}"
        self.schema = {self.column: pl.Float32}

    def spec(self) -> dict:
        return {"scorer": "norms", "embeddings": self.kind}


@dataclass
class ScoreResult:
    frame: pl.LazyFrame
    report: dict = field(default_factory=dict)  # column -> {"computed": n, "cached": n, "stale": n, "seconds": s}
    caches: dict = field(default_factory=dict)  # column -> cache folder

    def collect(self) -> pl.DataFrame:
        return self.frame.collect()


_Callback = CallbackBar  # the old name of the callable's bar (workbench.io.progress)


def _progress(total: int, enabled, desc: str):
    """A progress bar: ``True`` for tqdm, a callable(done, total) for a notebook widget, else silent
    (:func:`workbench.io.progress.progress_bar`)."""
    return progress_bar(enabled, total, desc, unit="shard")


def _shard_norms(collection, kind: str, shard: int, cache: ScoreCache | None) -> tuple[np.ndarray, np.ndarray]:
    if cache is not None and cache.state(shard) == "fresh":
        n = cache.load(shard)[cache_col(kind)].to_numpy()
    else:
        arr = collection.embeddings(shard, kind)
        n = np.empty(arr.shape[0], np.float32)
        for s in range(0, arr.shape[0], CHUNK_ROWS):
            n[s:s + CHUNK_ROWS] = row_stats(arr[s:s + CHUNK_ROWS]).norms
        if cache is not None:
            cache.store(shard, pl.DataFrame({cache_col(kind): n}))
    return n, _valid(n)


def _valid(norms: np.ndarray) -> np.ndarray:
    return np.isfinite(norms) & (norms > 1e-12)


def _dot_queries(scorers: list[Scorer]) -> tuple[np.ndarray, dict[str, tuple[int, int]]]:
    """The prompt vectors of every scorer that only needs dot products (``dot_queries``), stacked,
    and which columns of the result each scorer owns."""
    blocks, owners, at = [], {}, 0
    for s in scorers:
        q = s.dot_queries()
        if q is not None:
            blocks.append(np.asarray(q, np.float32))
            owners[s.column] = (at, at + len(q))
            at += len(q)
    dim = blocks[0].shape[1] if blocks else 0
    return (np.ascontiguousarray(np.concatenate(blocks)) if blocks else np.zeros((0, dim), np.float32)), owners


def cache_col(kind: str) -> str:
    return f"_norm_{kind}"


def compute(collection, scorers: list[Scorer], cache: bool = True, progress: bool = False,
            cache_dir: Path | None = None, refresh: bool = False, engine=None) -> ScoreResult:
    """Score every row with every scorer (from cache where fresh) and return the columns over ``row``.

    ``refresh`` scores again even where the cache is fresh (and rewrites it); ``cache=False``
    neither reads nor writes the cache (row norms included). ``engine`` (an
    :class:`~workbench.engine.Engine`): where the per-shard scoring runs (default: here, in order)."""
    scorers = list(scorers)
    if engine is not None and engine.kind == "local" and engine.workers == 1:
        engine = None  # in this process: the same work, with cache writes overlapping the next shard
    cols = [c for s in scorers for c in s.schema]
    dup = sorted({c for c in cols if cols.count(c) > 1})
    if dup:
        raise WorkbenchError(f"two scorers write the same column(s) {dup}")
    for s in scorers:
        s.prepare(collection)  # every check before any work
    if engine is not None:
        _check_picklable([s for s in scorers if s.needs != "global"])
    root = (cache_dir or cache_root(collection)) if cache else None
    caches = {s.column: ScoreCache(collection, s.column, s.spec(), root) if cache else None for s in scorers}
    report = {s.column: {"computed": 0, "cached": 0, "stale": 0, "seconds": 0.0} for s in scorers}
    n_shards = len(collection.shards)
    frames: dict[str, list] = {s.column: [None] * n_shards for s in scorers}

    def states(s):
        return [caches[s.column].state(i) if cache and not refresh else "missing" for i in range(n_shards)]

    todo: dict[str, list[str]] = {s.column: states(s) for s in scorers}
    for s in scorers:
        report[s.column]["stale"] = todo[s.column].count("stale")
        if s.needs == "global" and any(st != "fresh" for st in todo[s.column]):
            todo[s.column] = ["missing"] * n_shards
        report[s.column]["cached"] = todo[s.column].count("fresh")

    # whole-collection scorers
    for s in [s for s in scorers if s.needs == "global" and any(st != "fresh" for st in todo[s.column])]:
        t0 = time.perf_counter()
        arrays = s.compute_all(collection, progress=bool(progress) and not callable(progress))
        for i in range(n_shards):
            a, b = int(collection.offsets[i]), int(collection.offsets[i + 1])
            f = s.finish({k: v[a:b] for k, v in arrays.items()}, np.ones(b - a, bool))
            frames[s.column][i] = f
            if cache:
                caches[s.column].store(i, f)
        report[s.column]["computed"] = n_shards
        report[s.column]["seconds"] += time.perf_counter() - t0

    bar = _progress(n_shards, progress, "scoring")
    norm_caches = {k: ScoreCache(collection, f"_norm_{k}", _NormScorer(k).spec(), root) if cache else None
                   for k in ("image", "text")}
    work = {i: [s for s in scorers if s.needs != "global" and todo[s.column][i] != "fresh"]  # fresh: scanned below
            for i in range(n_shards)}
    try:
        if engine is None:
            _score_here(collection, work, frames, report, caches if cache else None, norm_caches, bar)
        else:
            _score_on(engine, collection, work, frames, report, caches if cache else None, norm_caches, bar)
    finally:
        if bar is not None:
            bar.close()

    # assemble: cached shards are scanned lazily from their parquet files
    parts = []
    for i in range(n_shards):
        a, rows = int(collection.offsets[i]), collection.shards[i].rows
        pieces = [pl.int_range(a, a + rows, dtype=pl.Int64, eager=True).alias(ROW).to_frame().lazy()]
        for s in scorers:
            f = frames[s.column][i]
            pieces.append(pl.scan_parquet(caches[s.column].path(i)) if f is None else f.lazy())
        parts.append(pl.concat(pieces, how="horizontal"))
    frame = pl.concat(parts, how="vertical") if parts else pl.LazyFrame(schema={ROW: pl.Int64})
    return ScoreResult(frame, report, {c: (v.folder if v else None) for c, v in caches.items()})


def _score_here(collection, work: dict, frames, report, caches, norm_caches, bar) -> None:
    """Shard by shard in this process; cache writes (in a thread) overlap the next shard."""
    from concurrent.futures import ThreadPoolExecutor

    writer = ThreadPoolExecutor(1, thread_name_prefix="score-cache")
    writes = []
    try:
        for i, pending in work.items():
            if pending:
                _score_shard(collection, i, pending, frames, report, norm_caches)
                if caches is not None:
                    writes += [writer.submit(caches[s.column].store, i, frames[s.column][i]) for s in pending]
            if bar is not None:
                bar.update(1)
    finally:
        writer.shutdown(wait=True)
    for w in writes:
        w.result()  # a failed cache write is an error, not a silent miss


@dataclass
class _ShardTask:
    """One shard's pending per-shard scorers, sent to a worker (everything in it pickles cheaply)."""

    collection: object
    shard: int
    scorers: list
    caches: list | None  # per scorer: its ScoreCache (the task writes the files), or None: frames come back
    norm_caches: dict


def _shard_task(task: _ShardTask) -> dict:
    """Score one shard for its pending scorers (its embeddings read once, row norms from their cache)
    and store their cache files; returns the report counts and seconds, and the frames when not caching."""
    i, scorers = task.shard, task.scorers
    frames = {s.column: {i: None} for s in scorers}
    report = {s.column: {"computed": 0, "seconds": 0.0} for s in scorers}
    _score_shard(task.collection, i, scorers, frames, report, task.norm_caches)
    if task.caches is not None:
        for s, c in zip(scorers, task.caches):
            c.store(i, frames[s.column][i])
        return {"report": report, "frames": None}
    return {"report": report, "frames": {s.column: frames[s.column][i] for s in scorers}}


def _score_on(engine, collection, work: dict, frames, report, caches, norm_caches, bar) -> None:
    """One engine task per shard that has work; the progress bar moves as tasks finish."""
    shards = [i for i, pending in work.items() if pending]
    if bar is not None and len(shards) < len(work):
        bar.update(len(work) - len(shards))  # nothing to do there
    tasks = [_ShardTask(collection, i, work[i], [caches[s.column] for s in work[i]] if caches is not None else None,
                        norm_caches) for i in shards]
    for k, out in engine.map(_shard_task, tasks):
        i = shards[k]
        for col, r in out["report"].items():
            report[col]["computed"] += r["computed"]
            report[col]["seconds"] += r["seconds"]
        if out["frames"] is not None:
            for col, f in out["frames"].items():
                frames[col][i] = f
        if bar is not None:
            bar.update(1)


def _check_picklable(scorers: list[Scorer]) -> None:
    """Per-shard scorers go to worker processes: say which one cannot, before any work."""
    for s in scorers:
        try:
            pickle.dumps(s)
        except Exception as exc:  # noqa: BLE001 - pickling raises many types (PicklingError, TypeError, AttributeError)
            raise WorkbenchError(f"scorer {s.column!r} ({type(s).__name__}) cannot be sent to worker processes "
                                 f"({type(exc).__name__}: {exc}); score it without an engine") from None


def _score_shard(collection, i: int, pending: list[Scorer], frames, report, norm_caches) -> None:
    local_rows = collection.shards[i].rows
    for s in pending:
        t0 = time.perf_counter()
        if s.needs == "metadata":
            frames[s.column][i] = s.shard_frame(collection, i)
            report[s.column]["computed"] += 1
            report[s.column]["seconds"] += time.perf_counter() - t0
    emb = [s for s in pending if s.needs in ("image", "text", "pair")]
    if not emb:
        return
    kinds = sorted({k for s in emb for k in (("image", "text") if s.needs == "pair" else (s.needs,))})
    arrays = {k: collection.embeddings(i, k) for k in kinds}
    # fp16 stores (the release format) with numba: one parallel pass per chunk gives every prompt's
    # dot products and, when they are not cached, the row norms (no separate norm pass)
    fused = {k: _dot_queries([s for s in emb if s.needs == k]) for k in kinds if fused_dots_available(arrays[k])}
    norms = {}
    for k in kinds:
        cached = norm_caches[k] is not None and norm_caches[k].state(i) == "fresh"
        if k in fused and not cached:
            norms[k] = (np.empty(local_rows, np.float32), None)  # filled chunk by chunk below
        else:
            norms[k] = _shard_norms(collection, k, i, norm_caches[k])
    out = {s.column: {c: [] for c in s.schema} for s in emb}
    for s in emb:
        s.begin_shard(collection, i)
    for a in range(0, local_rows, CHUNK_ROWS):
        b = min(a + CHUNK_ROWS, local_rows)
        dots = {}
        for k, (queries, owners) in fused.items():
            d, n = fused_dots(arrays[k][a:b], queries, norms[k][1] is None)
            if n is not None:
                norms[k][0][a:b] = n
            dots.update({col: d[:, lo:hi] for col, (lo, hi) in owners.items()})
        views = {k: ChunkView(int(collection.offsets[i]) + a, i, a, arrays[k][a:b], norms[k][0][a:b],
                              _valid(norms[k][0][a:b]) if norms[k][1] is None else norms[k][1][a:b], dots)
                 for k in kinds}
        for s in emb:
            t0 = time.perf_counter()
            res = s.chunk(views["image"], views["text"]) if s.needs == "pair" else s.chunk(views[s.needs])
            for c, v in res.items():
                out[s.column][c].append(v)
            report[s.column]["seconds"] += time.perf_counter() - t0
    for k in kinds:
        if norms[k][1] is None:  # computed in the pass: cache them like _shard_norms does
            if norm_caches[k] is not None:
                norm_caches[k].store(i, pl.DataFrame({cache_col(k): norms[k][0]}))
            norms[k] = (norms[k][0], _valid(norms[k][0]))
    for s in emb:
        valid = norms["image"][1] if s.needs == "pair" else norms[s.needs][1]
        if s.needs == "pair":
            valid = valid & norms["text"][1]
        arrays_s = {c: (np.concatenate(v) if v else np.zeros(0)) for c, v in out[s.column].items()}
        frames[s.column][i] = s.finish(arrays_s, valid)
        report[s.column]["computed"] += 1
