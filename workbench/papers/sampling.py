"""Sampling a training set by a score: top-k, Soft Cap Sampling and Hard Cap Sampling (FLYT).

    counts = soft_cap(scores, n=1_000_000, penalty=0.15, seed=0)   # int64 count per row, sums to n

Every method returns a count per row (a multiset: Soft and Hard Cap Sampling may pick a row more
than once); :func:`as_selection` makes it a :class:`~workbench.curation.recipe.Selection` carrying the
counts (``repeats``), which :func:`workbench.export.exporter.export` honours (each row written as many times).
All are seeded and reproducible.

Contract: ``scores[i]`` is the score of row ``i`` (position = row id: callers place a joined
column by row id, never by a join's output position, see ``workbench sample``). Rows whose score
is not finite (NaN, a null given as NaN or None, +inf, -inf) are never picked by any method, and
do not count towards the rows available (``--fraction``, ``top``'s n, ``hard_cap``'s n <= rows x cap).

- ``top(scores, n)``: the n highest scores once each (ties: the lower row first).
- ``soft_cap(scores, n, penalty, batch)``: draw ``batch`` rows at a time from ``softmax(z)``
  without replacement, then lower the drawn rows' ``z`` by ``penalty``, until n are drawn
  (FLYT's repetition penalty; published runs use 0.15 and 0.25). A batch is drawn with the
  Gumbel-top-k trick: the k largest of ``z + Gumbel noise`` are an exact sample without replacement
  from ``softmax(z)``, in one O(rows) pass.
- ``hard_cap(scores, n, cap)``: draw from ``softmax(z)`` with replacement, no row more than ``cap``
  times: the excess of capped rows is drawn again among the rows below the cap.
"""
from __future__ import annotations

import numpy as np

from workbench.errors import WorkbenchError

METHODS = ("top", "soft-cap", "hard-cap")


def _scores(scores) -> tuple[np.ndarray, np.ndarray]:
    """(scores as float64, the rows that may be picked: finite scores only; None becomes NaN)."""
    z = np.asarray(scores, dtype=np.float64)
    if z.ndim != 1:
        raise WorkbenchError(f"scores must be one value per row, got shape {z.shape}")
    ok = np.isfinite(z)
    return z, ok


def _check_n(n: int, available: int, what: str) -> None:
    if n < 0:
        raise WorkbenchError(f"--n must be >= 0, got {n}")
    if n > available:
        raise WorkbenchError(f"cannot pick {n:,} rows: {what}")


def top(scores, n: int) -> np.ndarray:
    """The n highest finite scores once each (ties: the lower row first); non-finite rows never."""
    z, ok = _scores(scores)
    _check_n(n, int(ok.sum()), f"only {int(ok.sum()):,} rows have a score")
    counts = np.zeros(len(z), np.int64)
    if n == 0:
        return counts
    rows = np.nonzero(ok)[0]
    order = np.lexsort((rows, -z[rows]))  # highest score first; ties: the lower row
    counts[rows[order[:n]]] = 1
    return counts


def soft_cap(scores, n: int, penalty: float, batch: int = 100_000, seed: int = 0) -> np.ndarray:
    """FLYT's Soft Cap Sampling (module docstring) over the rows with a finite score; the others never."""
    z64, ok = _scores(scores)
    available = int(ok.sum())
    if available == 0 and n > 0:
        raise WorkbenchError("no row has a score")
    _check_n(n, n if available else 0, "")
    if penalty < 0:
        raise WorkbenchError(f"--penalty must be >= 0, got {penalty}")
    if batch < 1:
        raise WorkbenchError(f"batch must be >= 1, got {batch}")
    rows = np.nonzero(ok)[0]
    # float32: half the memory traffic per pass; penalties are coarse. Clipped first, so that a finite
    # score beyond float32's range stays finite (an infinite key would be drawn in every batch)
    lim = float(np.finfo(np.float32).max) / 4
    z = np.clip(z64[rows], -lim, lim).astype(np.float32)
    local = np.zeros(len(rows), np.int64)
    rng = np.random.default_rng(seed)
    keys = np.empty(len(rows), np.float32)
    left = n
    while left > 0:
        k = min(batch, left, len(rows))
        # keys = z + Gumbel noise = z - log(-log(u)); the k largest are a sample without replacement
        rng.random(out=keys, dtype=np.float32)
        np.maximum(keys, np.float32(1e-38), out=keys)  # u == 0 would give an infinite key
        np.log(keys, out=keys)
        np.negative(keys, out=keys)
        np.log(keys, out=keys)
        np.subtract(z, keys, out=keys)
        picked = np.argpartition(keys, len(keys) - k)[len(keys) - k:] if k < len(keys) else np.arange(len(keys))
        local[picked] += 1
        z[picked] -= np.float32(penalty)
        left -= k
    counts = np.zeros(len(z64), np.int64)
    counts[rows] = local
    return counts


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


def hard_cap(scores, n: int, cap: int, seed: int = 0) -> np.ndarray:
    """Hard Cap Sampling (module docstring) over the rows with a finite score; the others never."""
    z, ok = _scores(scores)
    if cap < 1:
        raise WorkbenchError(f"--cap must be >= 1, got {cap}")
    available = int(ok.sum())
    _check_n(n, available * cap, f"{available:,} scored rows x cap {cap} = {available * cap:,}")
    if n == 0:  # nothing to draw (and no softmax of zero scored rows)
        return np.zeros(len(z), np.int64)
    rows = np.nonzero(ok)[0]
    local = np.zeros(len(rows), np.int64)
    rng = np.random.default_rng(seed)
    p = softmax(z[rows])
    left = n
    while left > 0:
        open_ = local < cap
        q = np.where(open_, p, 0.0)
        total = q.sum()
        if total <= 0:  # the open rows' probabilities underflowed: spread the rest over them evenly
            q = open_.astype(np.float64)
            total = q.sum()
        draw = rng.multinomial(left, q / total)
        local += draw
        excess = np.maximum(local - cap, 0)
        local -= excess
        left = int(excess.sum())
    counts = np.zeros(len(z), np.int64)
    counts[rows] = local
    return counts


def sample(scores, method: str, n: int, penalty: float = 0.15, cap: int = 15, seed: int = 0,
           batch: int = 100_000) -> np.ndarray:
    """A count per row from one of :data:`METHODS`: ``scores[i]`` is row i's score; a row whose
    score is NaN, +inf or -inf (or None) is never picked, by any method."""
    if method == "top":
        return top(scores, n)
    if method == "soft-cap":
        return soft_cap(scores, n, penalty, batch=batch, seed=seed)
    if method == "hard-cap":
        return hard_cap(scores, n, cap, seed=seed)
    raise WorkbenchError(f"unknown sampling method {method!r} (choose from {', '.join(METHODS)})")


def as_selection(counts, method: str = "sample"):
    """A :class:`~workbench.curation.recipe.Selection` over every row: rows with a count > 0 kept, the others
    removed by the rule ``not sampled (<method>)``, and the counts attached as ``repeats`` for export."""
    from workbench.curation.recipe import Selection

    c = np.asarray(counts)
    if c.ndim != 1 or c.dtype.kind not in "iu" or (len(c) and c.min() < 0):
        raise WorkbenchError("counts must be one non-negative integer per row")
    n = len(c)
    reason = np.where(c > 0, -1, 0).astype(np.int16)
    gone = int((c == 0).sum())
    return Selection(np.arange(n, dtype=np.int64), reason, [f"not sampled ({method})"], np.array([gone], np.int64),
                     np.array([[gone]], np.int64), repeats=c.astype(np.int64))


def sample_collection(collection, by: str, method: str, out, n: int | None = None, fraction: float | None = None,
                      penalty: float = 0.15, cap: int = 15, batch: int = 100_000, seed: int = 0,
                      scores=None) -> dict:
    """Sample rows of `collection` by the score column `by` (of the metadata, or of the scores
    parquet `scores`, joined on ``row`` by :func:`workbench.curation.apply.scores_frame`) with
    :func:`sample`, and write ``row, count`` (int64, the picked rows ascending) to the parquet
    `out`, whole or not at all: what ``workbench sample`` does.

    Each score is placed by its row id, never by position; null, NaN and +-inf are never picked.
    `n`: picks in all; or `fraction` (0 < F <= 1): ``ceil(F x scored rows)``. Refused
    (:class:`WorkbenchError`): no column `by`, a column that is not numbers, row ids outside the
    collection, a fraction outside (0, 1]. Returns ``{"source", "by", "method", "n", "rows",
    "scored_rows", "distinct", "max_count", "seed", "out"[, "fraction"][, "penalty"][, "cap"]}``."""
    import math
    from pathlib import Path

    import polars as pl

    from workbench.curation.apply import scores_frame
    from workbench.io.files import write_parquet_atomic

    lf = scores_frame(collection, scores, [by])
    have = lf.collect_schema().names()
    if by not in have:
        raise WorkbenchError(f"no column {by!r} to sample by (columns: {', '.join(sorted(have))})",
                             scores or collection.path)
    df = lf.select(pl.col("row"), pl.col(by)).collect()
    col = df[by]
    if not col.dtype.is_numeric():
        raise WorkbenchError(f"column {by!r} is {col.dtype}, not a number", scores or collection.path)
    ids = df["row"].to_numpy()
    size = len(collection)
    if len(ids) and (ids.min() < 0 or ids.max() >= size):
        raise WorkbenchError(f"row ids {ids.min()}..{ids.max()} do not fit the collection's {size:,} rows",
                             collection.path)
    values = np.full(size, np.nan)
    values[ids] = col.cast(pl.Float64).fill_null(float("nan")).to_numpy()
    scored = int(np.isfinite(values).sum())
    if fraction is not None:
        if not 0 < fraction <= 1:
            raise WorkbenchError(f"--fraction must be in (0, 1], got {fraction}")
        n = math.ceil(fraction * scored)
    counts = sample(values, method, n, penalty=penalty, cap=cap, seed=seed, batch=batch)
    rows = np.nonzero(counts)[0]
    write_parquet_atomic(pl.DataFrame({"row": rows.astype(np.int64), "count": counts[rows].astype(np.int64)}), out)
    res = {"source": str(collection.path), "by": by, "method": method, "n": int(counts.sum()), "rows": size,
           "scored_rows": scored, "distinct": int(len(rows)), "max_count": int(counts.max(initial=0)), "seed": seed,
           "out": str(Path(out))}
    if fraction is not None:
        res["fraction"] = fraction
    if method == "soft-cap":
        res["penalty"] = penalty
    if method == "hard-cap":
        res["cap"] = cap
    return res
