"""A 2-D map of every row: UMAP fitted on a sample, every other row placed beside its nearest sample rows.

    from workbench.map.projection import project, ProjectionScorer
    xy = project(c)                      # (len(c), 2) float32, NaN for invalid rows
    res = compute(c, [ProjectionScorer()])   # the same, as cached columns map_x / map_y

Method
    1. *sample*: `sample` rows drawn uniformly without replacement over all rows (so each shard in
       proportion to its size; :func:`sample_rows`), gathered as float32 unit rows; invalid rows
       (NaN/inf/zero: zero vectors after normalisation) are dropped from the fit.
    2. *umap*: ``umap.UMAP(n_neighbors, min_dist, metric, random_state=seed).fit_transform`` on the
       sample. A fixed seed makes UMAP single-threaded (and the map reproducible); ``seed=None``
       lets it use every core, at the price of a different map each time.
    3. *place*: every other row is streamed by shard (``iter_embeddings``, chunks of
       ``PLACE_CHUNK_ROWS``) and placed at the similarity-weighted mean of the 2-D positions of its
       `place_k` most cosine-similar sample rows: weights ``exp((s_j - s_1) / PLACE_TEMPERATURE)``
       (``s_1`` its top similarity), so a row that is nearly a copy of one sample row lands on
       it, and a row between groups lands between them. Neighbours are exact (faiss
       ``IndexFlatIP``) up to ``EXACT_PLACE_MAX`` sample rows; for larger samples they are
       approximate (:class:`_Neighbours`: k-means lists of the sample, queries grouped by their
       nearest list and compared with the rows of the lists nearest to it, a few matrix products
       per group): fine for a position that is a weighted mean anyway, and it keeps
       placement of 1M rows at seconds where the exact 1M x 50k x 512 product takes ~10 minutes
       on 2 cores. On CPUs with AMX (Intel Sapphire Rapids and later) those products run in
       bfloat16 (``placement.PLACE_PRECISION``; a row moves by ~0.2% of the map's spread from
       where float32 products put it: ``benchmarks/bench_place.py``). Sample rows keep their
       fitted positions exactly.

Memory: the sample (``4 * dim`` bytes per sample row, 100 MB at 50,000 x 512), one chunk of
embeddings and the (n, 2) float32 result (8 bytes per row); embeddings are never loaded whole.

Invalid rows (``chunk.valid`` False) get NaN from :func:`project`; :class:`ProjectionScorer`
stores them as nulls, like every other score.
"""
from __future__ import annotations

import warnings
from importlib import metadata as _md

import numpy as np
import polars as pl

from workbench.io.collection import KINDS
from workbench.errors import NoEmbeddingsError, ProjectionCancelled, WorkbenchError
from workbench.map.placement import (EXACT_PLACE_MAX, PLACE_CHUNK_ROWS, PLACE_PROBE,  # noqa: F401 (re-exported)
                                      PLACE_TEMPERATURE, Placer, place_task)
from workbench.scoring.scorecache import cache_root
from workbench.scoring.scorers import Scorer

DEFAULT_SAMPLE = 50_000  # the most rows UMAP is fitted on by default (see default_sample)
MIN_DEFAULT_SAMPLE = 20_000
PROGRESS_STAGES = ("sample", "umap", "place", "done")
VERSION = 2  # of the method: part of ProjectionScorer's spec (a change recomputes cached maps)


# -- checks ------------------------------------------------------------------------------------------
def _int(name: str, v, low: int, allow_none: bool = False):
    if v is None and allow_none:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
        extra = " (or None)" if allow_none else ""
        raise WorkbenchError(f"{name} must be an integer >= {low}{extra}, got {v!r}")
    return int(v)


def check_kind(collection, kind: str, what: str) -> None:
    """`kind` is image or text, and every shard of `collection` has such embeddings."""
    if kind not in KINDS:
        raise WorkbenchError(f"kind must be one of {KINDS}, not {kind!r}")
    missing = [s.name for s in collection.shards if (s.image if kind == "image" else s.text) is None]
    if missing:
        if len(missing) == len(collection.shards):
            raise NoEmbeddingsError(f"{what} needs {kind} embeddings: " + collection._no_embeddings(kind),
                                    collection.path)
        raise NoEmbeddingsError(f"{what} needs {kind} embeddings, and {len(missing)} of {len(collection.shards)} "
                                f"shards have none (first: {missing[0]})", collection.path)
    if len(collection) == 0:
        raise WorkbenchError(f"{what}: the collection has no rows", collection.path)


def _version(*names: str) -> str:
    for n in names:
        try:
            return _md.version(n)
        except _md.PackageNotFoundError:
            continue
    return "?"


# -- sampling ----------------------------------------------------------------------------------------
def sample_rows(collection, n: int, seed: int = 0) -> np.ndarray:
    """Sorted global row ids (int64): `n` rows drawn uniformly without replacement over all rows
    (every shard in proportion to its size); all rows when ``n >= len(collection)``."""
    n = _int("n", n, 0)
    seed = _int("seed", seed, 0)
    total = len(collection)
    if n >= total:
        return np.arange(total, dtype=np.int64)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(total, size=n, replace=False).astype(np.int64))


def _gather(collection, rows: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(valid row ids, their float32 unit rows): invalid rows come back from take_embeddings zeroed."""
    x = collection.take_embeddings(rows, kind) if len(rows) else np.zeros((0, collection.dim), np.float32)
    ok = np.einsum("ij,ij->i", x, x) > 0.5
    return rows[ok], np.ascontiguousarray(x[ok], dtype=np.float32)


# -- PCA ---------------------------------------------------------------------------------------------
def pca_2d(x: np.ndarray) -> np.ndarray:
    """(n, 2) float32: rows of `x` (n, d) on their top-2 principal components (centred rows; a fast
    first view). Covariance accumulated in float64 by blocks; each axis's sign fixed so its largest
    loading is positive (the same data gives the same picture). Rows must be finite."""
    x = np.asarray(x)
    if x.ndim != 2:
        raise WorkbenchError(f"pca_2d needs a 2-d array (rows, dims), got shape {x.shape}")
    n, d = x.shape
    out = np.zeros((n, 2), np.float32)
    if n < 2 or d == 0:
        return out
    mean = np.zeros(d)
    for s in range(0, n, 65_536):
        mean += x[s:s + 65_536].sum(axis=0, dtype=np.float64)
    mean /= n
    cov = np.zeros((d, d))
    for s in range(0, n, 65_536):
        b = x[s:s + 65_536].astype(np.float64) - mean
        cov += b.T @ b
    w, v = np.linalg.eigh(cov)  # ascending
    axes = v[:, ::-1][:, : min(2, d)]
    big = np.argmax(np.abs(axes), axis=0)
    axes = axes * np.sign(axes[big, np.arange(axes.shape[1])])
    for s in range(0, n, 65_536):
        out[s:s + 65_536, : axes.shape[1]] = (x[s:s + 65_536].astype(np.float64) - mean) @ axes
    return out


# -- UMAP + placement ---------------------------------------------------------------------------------
def _umap(x: np.ndarray, n_neighbors: int, min_dist: float, metric: str, seed: int | None,
          n_epochs: int | None) -> np.ndarray:
    try:
        import umap
    except ImportError:  # pragma: no cover - umap-learn is a dependency
        raise WorkbenchError("the map needs the umap-learn package (pip install umap-learn)") from None
    m = len(x)
    if m <= 3:  # too few rows for UMAP's spectral layout: a line is the honest picture
        return pca_2d(x)
    reducer = umap.UMAP(n_components=2, n_neighbors=max(2, min(n_neighbors, m - 1)), min_dist=min_dist,
                        metric=metric, random_state=seed, n_epochs=n_epochs, n_jobs=1 if seed is not None else -1,
                        low_memory=True, verbose=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "n_jobs overridden by setting random_state", tiny-graph notes
        y = reducer.fit_transform(x)
    return np.ascontiguousarray(y, dtype=np.float32)


def default_sample(rows: int) -> int:
    """The default UMAP sample for a collection of `rows`: a fifth of the rows, at least 20,000 and
    at most 50,000 (100k rows: 20,000, a 10 s fit here; 1M and more: 50,000). The notebook and
    ``workbench map`` use the same rule, so a map precomputed by either is found by the other."""
    return int(min(DEFAULT_SAMPLE, max(MIN_DEFAULT_SAMPLE, rows // 5)))


def project(collection, kind: str = "image", sample: int | None = None, n_neighbors: int = 15,
            min_dist: float = 0.1, metric: str = "cosine", seed: int | None = 0, place_k: int = 10,
            n_epochs: int | None = None, progress=None, info: dict | None = None, engine=None) -> np.ndarray:
    """(len(collection), 2) float32 map positions of every row (see the module docstring); NaN for
    invalid rows. With an `engine` (:mod:`workbench.engine`) the placement runs one task per shard
    (the fit stays here): the positions are byte-identical to a run without one (float32
    products: see :mod:`workbench.map.placement`). `progress`: an optional
    ``callable(stage, fraction)``, called with stages ``"sample"``, ``"umap"`` (fraction None:
    indeterminate), ``"place"`` (0..1), ``"done"``.
    `info`, when a dict, receives what was done: sample size, neighbour method, seconds per phase."""
    import time

    check_kind(collection, kind, "the map")
    sample = _int("sample", default_sample(len(collection)) if sample is None else sample, 3)
    n_neighbors = _int("n_neighbors", n_neighbors, 2)
    place_k = _int("place_k", place_k, 1)
    n_epochs = _int("n_epochs", n_epochs, 1, allow_none=True)
    seed = _int("seed", seed, 0, allow_none=True)
    if isinstance(min_dist, bool) or not isinstance(min_dist, (int, float, np.floating)) or not min_dist >= 0:
        raise WorkbenchError(f"min_dist must be a number >= 0, got {min_dist!r}")
    if not isinstance(metric, str) or not metric:
        raise WorkbenchError(f"metric must be a UMAP metric name such as 'cosine', got {metric!r}")
    if progress is not None and not callable(progress):
        raise WorkbenchError(f"progress must be a callable(stage, fraction) or None, got {progress!r}")

    def report(stage, fraction):
        if progress is not None:
            progress(stage, fraction)

    n = len(collection)
    t0 = time.perf_counter()
    report("sample", 0.0)
    rows, x = _gather(collection, sample_rows(collection, min(sample, n), seed or 0), kind)
    if len(rows) < 3:
        raise WorkbenchError(f"the map needs at least 3 valid rows in its sample, found {len(rows)} "
                             "(are the embeddings NaN or zero?)", collection.path)
    report("sample", 1.0)
    t1 = time.perf_counter()
    report("umap", None)
    fitted = _umap(x, n_neighbors, float(min_dist), metric, seed, n_epochs)
    t2 = time.perf_counter()
    report("place", 0.0)
    out = np.full((n, 2), np.nan, np.float32)
    out[rows] = fitted
    placed = 0
    method = "none"
    if len(rows) < n:  # rows outside the sample (or invalid sampled rows): placed shard by shard
        placer = Placer(x, place_k, seed, rows, fitted)
        del x  # the neighbour search keeps its own (sorted) copy when it needs one
        method = placer.nb.method
        sizes = np.diff(collection.offsets)
        done_rows = 0
        if engine is None:
            results = ((i, placer.place_shard(collection, i, kind)) for i in range(len(collection.shards)))
        else:  # one task per shard; the workers read the placer from a file beside the collection's caches
            state = placer.save(cache_root(collection))
            tasks = [(collection, i, kind, str(state)) for i in range(len(collection.shards))]
            results = ((tasks[j][1], res) for j, res in engine.map(place_task, tasks))
        try:
            for i, (pos, count) in results:
                a, b = int(collection.offsets[i]), int(collection.offsets[i + 1])
                out[a:b] = pos
                placed += count
                done_rows += int(sizes[i])
                report("place", min(1.0, done_rows / n))
        finally:
            if engine is not None:
                state.unlink(missing_ok=True)
    else:
        del x
    t3 = time.perf_counter()
    report("place", 1.0)
    report("done", 1.0)
    if info is not None:
        info.update({"rows": n, "sample": int(len(rows)), "placed": placed, "neighbours": method,
                     "n_neighbors": n_neighbors, "min_dist": float(min_dist), "metric": metric, "seed": seed,
                     "place_k": place_k, "n_epochs": n_epochs, "seconds_sample": t1 - t0, "seconds_umap": t2 - t1,
                     "seconds_place": t3 - t2})
    return out


# -- the scorer ------------------------------------------------------------------------------------
class ProjectionScorer(Scorer):
    """Map positions ``map_x``, ``map_y`` of every row (:func:`project`), as a cached whole-collection
    score: the first compute fits the map, later ones (same parameters, unchanged shards) read it
    back from the score cache. Invalid rows get nulls."""

    needs = "global"
    column = "map_x"
    schema = {"map_x": pl.Float32, "map_y": pl.Float32}

    def __init__(self, kind: str = "image", sample: int | None = None, n_neighbors: int = 15,
                 min_dist: float = 0.1, seed: int | None = 0, place_k: int = 10, n_epochs: int | None = None,
                 progress=None, engine=None):
        self.kind, self.sample, self.n_neighbors, self.min_dist = kind, sample, n_neighbors, min_dist
        self.seed, self.place_k, self.n_epochs, self.progress = seed, place_k, n_epochs, progress
        self.engine = engine  # placement per shard on it (not part of the spec: the bytes are the same)
        self.metric = "cosine"
        self.info: dict = {}

    def prepare(self, collection) -> None:
        check_kind(collection, self.kind, "the map")
        if self.sample is None:
            self.sample = default_sample(len(collection))
        _int("sample", self.sample, 3)
        _int("n_neighbors", self.n_neighbors, 2)
        _int("place_k", self.place_k, 1)
        _int("n_epochs", self.n_epochs, 1, allow_none=True)
        _int("seed", self.seed, 0, allow_none=True)
        if isinstance(self.min_dist, bool) or not isinstance(self.min_dist, (int, float)) or not self.min_dist >= 0:
            raise WorkbenchError(f"min_dist must be a number >= 0, got {self.min_dist!r}")

    def spec(self) -> dict:
        return {"scorer": "projection", "version": VERSION, "kind": self.kind, "sample": self.sample,
                "n_neighbors": self.n_neighbors, "min_dist": float(self.min_dist), "metric": self.metric,
                "seed": self.seed, "place_k": self.place_k, "n_epochs": self.n_epochs,
                "umap": _version("umap-learn"), "faiss": _version("faiss-cpu", "faiss-gpu", "faiss")}

    def compute_all(self, collection, progress: bool = False) -> dict[str, np.ndarray]:
        xy = project(collection, kind=self.kind, sample=self.sample, n_neighbors=self.n_neighbors,
                     min_dist=self.min_dist, metric=self.metric, seed=self.seed, place_k=self.place_k,
                     n_epochs=self.n_epochs, progress=self.progress, info=self.info, engine=self.engine)
        return {"map_x": xy[:, 0], "map_y": xy[:, 1]}

    def finish(self, arrays: dict[str, np.ndarray], valid: np.ndarray) -> pl.DataFrame:
        ok = np.isfinite(arrays["map_x"]) & np.isfinite(arrays["map_y"]) & valid
        return super().finish(arrays, ok)


# -- the map as a job in another process ------------------------------------------------------------
JOB_STATES = ("running", "done", "failed", "cancelled")


class _CancelledInChild(Exception):
    """Raised by the child's progress callback once the job is cancelled."""


def _job_main(collection, params: dict, cache_dir, conn, cancel) -> None:
    """The child process: ``compute(collection, [ProjectionScorer(**params)], cache=True)``, its
    progress sent over `conn` as ``("progress", stage, fraction)`` (throttled: a stage's first and
    last report, and steps of at least 1%), then one ``("done", summary)`` or ``("error", exc)``."""
    import pickle
    import time

    last: dict = {}

    def progress(stage, fraction=None):
        if cancel.is_set():
            raise _CancelledInChild()
        prev = last.get(stage)
        if prev is not None and fraction is not None and fraction < 1.0 and fraction - prev < 0.01:
            return
        last[stage] = -1.0 if fraction is None else fraction
        conn.send(("progress", stage, fraction))

    try:
        from workbench.scoring.compute import compute

        t0 = time.perf_counter()
        s = ProjectionScorer(progress=progress, **params)
        res = compute(collection, [s], cache=True, cache_dir=cache_dir)
        conn.send(("done", {"rows": len(collection), "cache": str(res.caches["map_x"]),
                            "report": res.report["map_x"], "info": dict(s.info),
                            "seconds": round(time.perf_counter() - t0, 3)}))
    except _CancelledInChild:
        conn.send(("cancelled", None))
    except BaseException as exc:  # noqa: BLE001 - handed to the parent, which raises it
        try:
            pickle.dumps(exc)
            conn.send(("error", exc))
        except Exception:  # noqa: BLE001 - an exception that cannot cross processes: its message
            conn.send(("error", WorkbenchError(f"{type(exc).__name__}: {exc}")))
    finally:
        conn.close()


class ProjectionJob:
    """A map being computed in another process (see :func:`start_projection_job`).

    The child writes the same score cache as ``workbench map SRC`` (and as
    ``compute(collection, [ProjectionScorer(**params)])``); this process only polls a pipe, so it
    holds no GIL-heavy work (a notebook kernel stays responsive). One thread may wait on it while
    another cancels it (reads of the pipe hold a lock).

    - :attr:`state`: ``"running"``, ``"done"``, ``"failed"`` or ``"cancelled"``;
      :attr:`stage` / :attr:`fraction`: the latest progress (stages of :func:`project`:
      ``sample``, ``umap`` (fraction None), ``place``, ``done``).
    - :meth:`poll` reads what arrived; :meth:`wait` blocks until the end and returns the summary
      (``rows``, ``cache``, ``report``, ``info``, ``seconds``), raising the child's error, or
      :class:`ProjectionCancelled`; :meth:`cancel` stops the child; :meth:`result` reads the map back.
    """

    def __init__(self, collection, params: dict, cache_dir=None):
        import threading
        from multiprocessing import get_context

        self._lock = threading.RLock()
        self.collection, self.params, self.cache_dir = collection, dict(params), cache_dir
        ctx = get_context("spawn")  # a fresh interpreter: no fork of a kernel's threads and locks
        self._conn, child_conn = ctx.Pipe(duplex=False)
        self._cancel = ctx.Event()
        self.process = ctx.Process(target=_job_main, args=(collection, self.params, cache_dir, child_conn, self._cancel),
                                   name="workbench-map", daemon=True)
        self.state, self.stage, self.fraction = "running", None, None
        self.summary: dict | None = None
        self.error: BaseException | None = None
        self.process.start()
        child_conn.close()  # ours: the pipe reads EOF once the child is gone

    # -- polling ---------------------------------------------------------------------------------
    def _finish(self, state: str, error: BaseException | None = None) -> None:
        self.state, self.error = state, error
        try:
            self._conn.close()
        except OSError:  # pragma: no cover
            pass
        self.process.join(5)

    def poll(self, timeout: float = 0.0) -> list[tuple[str, float | None]]:
        """The progress reports ``(stage, fraction)`` that arrived since the last poll, waiting up to
        `timeout` seconds for the first one; updates :attr:`state` when the child has ended."""
        with self._lock:
            return self._poll(timeout)

    def _poll(self, timeout: float) -> list:
        out: list = []
        if self.state != "running":
            return out
        wait = timeout
        while self.state == "running":
            try:
                if not self._conn.poll(wait):
                    break
                msg = self._conn.recv()
            except (EOFError, OSError):  # the child ended without a last word (killed, crashed)
                if self._cancel.is_set():
                    self._finish("cancelled")
                else:
                    self.process.join(5)
                    self._finish("failed", WorkbenchError(
                        f"computing the map failed: its process ended (exit code {self.process.exitcode})",
                        self.collection.path))
                break
            wait = 0.0
            kind = msg[0]
            if kind == "progress":
                self.stage, self.fraction = msg[1], msg[2]
                out.append((msg[1], msg[2]))
            elif kind == "done":
                self.summary = msg[1]
                self._finish("done")
            elif kind == "cancelled":
                self._finish("cancelled")
            else:
                self._finish("failed", msg[1])
        return out

    def done(self) -> bool:
        """True once the job has ended (done, failed or cancelled); polls first."""
        self.poll()
        return self.state != "running"

    def wait(self, timeout: float | None = None, progress=None) -> dict:
        """Block until the job ends, calling ``progress(stage, fraction)`` for each report; return the
        summary. Raises the child's error (a :class:`~workbench.errors.WorkbenchError` keeps its
        path), :class:`ProjectionCancelled`, or ``TimeoutError`` after `timeout` seconds (the job
        keeps running)."""
        import time

        end = None if timeout is None else time.monotonic() + timeout
        while self.state == "running":
            left = 0.2 if end is None else max(0.0, min(0.2, end - time.monotonic()))
            for stage, fraction in self.poll(left):
                if progress is not None:
                    progress(stage, fraction)
            if self.state == "running" and end is not None and time.monotonic() >= end:
                raise TimeoutError(f"the map is still being computed after {timeout} s")
        if self.state == "cancelled":
            raise ProjectionCancelled("the map was cancelled", self.collection.path)
        if self.state == "failed":
            raise self.error
        return self.summary

    def cancel(self, grace: float = 2.0) -> bool:
        """Stop the job: the child stops at its next progress report, or is terminated after `grace`
        seconds (UMAP's fit reports nothing while it runs). A map the child already cached stays
        cached; no half-written cache is ever read as fresh. True when the job was still running."""
        if self.state != "running":
            return False
        self._cancel.set()
        self.process.join(grace)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)
            if self.process.is_alive():  # pragma: no cover - SIGTERM ignored
                self.process.kill()
                self.process.join(5)
        with self._lock:
            self._poll(0.0)  # a last word, or EOF
            if self.state == "running":
                self._finish("cancelled")
            return self.state == "cancelled"

    def result(self) -> pl.DataFrame:
        """``row, map_x, map_y`` of every row, read back from the cache the job wrote (after :meth:`wait`)."""
        from workbench.scoring.compute import compute

        self.wait()
        return compute(self.collection, [ProjectionScorer(**self.params)], cache=True, cache_dir=self.cache_dir).collect()

    def __repr__(self) -> str:
        return f"ProjectionJob({self.state}, stage={self.stage!r}, fraction={self.fraction!r})"


def start_projection_job(collection, cache_dir=None, **params) -> ProjectionJob:
    """Start computing the map of `collection` in another (spawned) process: ``ProjectionScorer(**params)``
    through :func:`workbench.scoring.compute.compute` with the cache on, so it leaves the same cached
    ``map_x``/``map_y`` as ``workbench map SRC`` with the same parameters (and a later compute reads
    them back). `params` are :class:`ProjectionScorer`'s (kind, sample, n_neighbors, min_dist, seed,
    place_k, n_epochs) and are checked here, before any process starts. Returns a running
    :class:`ProjectionJob`."""
    if "progress" in params:
        raise WorkbenchError("a projection job reports progress through ProjectionJob.poll/wait, not a callable")
    ProjectionScorer(**params).prepare(collection)  # every check before a process starts
    return ProjectionJob(collection, params, cache_dir)


def map_collection(collection, kind: str = "image", sample: int | None = None, n_neighbors: int = 15,
                   min_dist: float = 0.1, seed: int = 0, place_k: int = 10, n_epochs: int | None = None,
                   progress=None, engine=None) -> dict:
    """What ``workbench map`` does: the 2-D map of every row (:class:`ProjectionScorer`), computed
    or read from the score cache beside the collection. `progress(stage, fraction=None)` is called
    per step when given; with an `engine`, placement runs one task per shard on it. Returns ``{"source", "rows", "cache": the map's cache folder, "report": its
    compute report (``cached`` says whether it was read), "seconds"}``."""
    import time

    from workbench.scoring.compute import compute

    t0 = time.perf_counter()
    s = ProjectionScorer(kind=kind, sample=sample, n_neighbors=n_neighbors, min_dist=min_dist, seed=seed,
                         place_k=place_k, n_epochs=n_epochs, progress=progress, engine=engine)
    res = compute(collection, [s], cache=True)
    return {"source": str(collection.path), "rows": len(collection), "cache": str(res.caches["map_x"]),
            "report": res.report["map_x"], "seconds": round(time.perf_counter() - t0, 3)}
