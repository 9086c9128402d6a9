"""faiss indexes of a collection's embeddings: IVF-PQ indexes built to a memory budget, and clip-retrieval's.

:func:`build_index` writes an IVF-PQ index (layout from :func:`choose_factory`, sized to a memory
budget; inner product, so cosine on unit rows) and a JSON sidecar beside it (rows, indexed vectors,
dim, kind, the collection's fingerprint, the default nprobe), both atomically. :func:`load_index`
reads an index memory-mapped; :func:`find_index` finds one beside the collection: the one
:func:`build_index` writes by default (:func:`default_index_path`), or the ``image.index`` /
``text.index`` that clip-retrieval (autofaiss) writes. :func:`index_search` asks an index for the
top-k, with the output contract of :func:`workbench.scoring.neighbors.exact_search`.

:func:`resolve_index` decides what :func:`workbench.scoring.neighbors.search` uses (exact search, or an index
found or given) and checks the index against the collection (dimension, row count, kind: a stale
index is refused).

Invalid rows (NaN/inf/zero-norm embeddings, ``EmbeddingChunk.valid`` False) are left out of the
index (ids stay the global row ids, so the index holds ``rows - skipped_rows`` vectors; the sidecar
records both).

The query, ``k`` and ``kind`` checks and the top-k ordering live here and are shared with
:mod:`workbench.scoring.neighbors` (which imports this module; this module never imports it).

faiss is imported only when used.
"""
from __future__ import annotations

import json
import math
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from workbench.io.collection import KINDS
from workbench.errors import NoEmbeddingsError, WorkbenchError
from workbench.io.files import write_atomic
from workbench.io.progress import progress_bar

EXACT_BELOW = 2_000_000  # resolve_index's "auto": exact search up to this many rows
INDEX_DIR = ".workbench"  # build_index's default place, inside the collection's folder
SIDECAR_SUFFIX = ".json"
SIDECAR_FORMAT = "workbench-faiss-index/1"
PQ_CODE_BYTES = (4, 8, 12, 16, 24, 32, 48, 64)  # PQ m candidates (bytes a row, 8-bit codes)
ID_BYTES = 8  # each entry of an IVF inverted list stores its int64 id beside the code
MAX_NLIST = 65_536
HNSW_FROM_NLIST = 16_384  # from this many lists, an HNSW graph finds a row's list (not brute force)
MIN_TRAIN_PER_LIST = 39  # faiss's k-means wants >= 39 points per centroid
MAX_TRAIN_ROWS = 200_000
SEED = 0


# -- small helpers (the query, k and kind checks are shared with workbench.scoring.neighbors) -------------
def _faiss():
    try:
        import faiss
    except ImportError:
        raise WorkbenchError("faiss is not installed: `pip install faiss-cpu` to build or read indexes") from None
    return faiss


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise WorkbenchError(f"kind must be one of {KINDS}, not {kind!r}")


def _check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise WorkbenchError(f"k must be a positive integer, not {k!r}")
    return int(k)


def _embedding_dim(collection, kind: str) -> int:
    """The dim of the collection's `kind` embeddings; NoEmbeddingsError when it has none."""
    _check_kind(kind)
    has = collection.has_embeddings if kind == "image" else collection.has_text_embeddings
    if not has:
        raise NoEmbeddingsError(f"this collection has no {kind} embeddings to search", collection.path)
    return int(collection.dim)


def _prepare_queries(queries, dim: int, against: str) -> np.ndarray:
    """(q, dim) float32 unit rows from a (dim,) vector or a (q, dim) array; clear errors otherwise."""
    try:
        q = np.asarray(queries, dtype=np.float32)
    except (TypeError, ValueError):
        raise WorkbenchError(f"a query must be a vector of numbers, not {type(queries).__name__}") from None
    if q.ndim == 1:
        q = q[None, :]
    if q.ndim != 2:
        raise WorkbenchError(f"a query must be a (d,) vector or a (q, d) array, not shape {q.shape}")
    if q.shape[1] != dim:
        raise WorkbenchError(f"query is {q.shape[1]}-d, {against} are {dim}-d")
    if not np.isfinite(q).all():
        bad = int(np.nonzero(~np.isfinite(q).all(axis=1))[0][0])
        raise WorkbenchError(f"query {bad} holds NaN or inf")
    norms = np.linalg.norm(q.astype(np.float64), axis=1)
    if len(q) and norms.min() <= 1e-12:
        raise WorkbenchError(f"query {int(np.argmin(norms))} is the zero vector: it has no direction to search")
    return np.ascontiguousarray(q / norms[:, None].astype(np.float32), dtype=np.float32)


def _exclude(exclude_rows) -> np.ndarray:
    """Sorted unique global row ids from None, an int, or any iterable of ints (set, list, array, Series)."""
    if exclude_rows is None:
        return np.empty(0, dtype=np.int64)
    if isinstance(exclude_rows, (set, frozenset)):
        exclude_rows = sorted(exclude_rows)
    try:
        return np.unique(np.asarray(exclude_rows, dtype=np.int64).ravel())
    except (TypeError, ValueError):
        raise WorkbenchError(f"exclude_rows must be row ids (integers), not {exclude_rows!r}"[:200]) from None


def _order(scores: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per query: descending score, ties by the lower row, padding (row -1, score -inf) last; keep k."""
    pad = rows < 0
    scores = np.where(pad, -np.inf, scores).astype(np.float32)
    rows = np.where(pad | ~np.isfinite(scores), -1, rows).astype(np.int64)
    scores[rows < 0] = -np.inf
    # primary key -score (padding's +inf sorts last), secondary the row; padding rows as +big
    order = np.lexsort((np.where(rows < 0, np.iinfo(np.int64).max, rows), -scores), axis=-1)[:, :k]
    s, r = np.take_along_axis(scores, order, 1), np.take_along_axis(rows, order, 1)
    if s.shape[1] < k:  # fewer candidates than k: pad
        extra = k - s.shape[1]
        s = np.concatenate([s, np.full((len(s), extra), -np.inf, np.float32)], 1)
        r = np.concatenate([r, np.full((len(r), extra), -1, np.int64)], 1)
    return s, r


def parse_bytes(value) -> int:
    """A memory size: an int (bytes) or a string like ``"2GB"``, ``"512 MB"``, ``"1.5GiB"``, ``"800M"``.

    K/M/G/T (with or without a trailing B) are powers of 1000; KiB/MiB/GiB/TiB powers of 1024.
    """
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        n = int(value)
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]?)(i?)b?\s*", str(value), re.IGNORECASE)
        if not m or (m.group(3) and not m.group(2)):
            raise WorkbenchError(f"memory budget {value!r} is not a size like '2GB', '512MB', '1.5GiB' or a number of bytes")
        power = " kmgt".index(m.group(2).lower() or " ")
        n = int(float(m.group(1)) * (1024 if m.group(3) else 1000) ** power)
    if n <= 0:
        raise WorkbenchError(f"memory budget {value!r} must be positive")
    return n


def _fmt_bytes(n: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


# -- building an index --------------------------------------------------------------------------
def _divisors_m(dim: int) -> list[int]:
    ms = [m for m in PQ_CODE_BYTES if dim % m == 0 and m <= dim // 4]
    if not ms:  # an unusual dim: any divisor, so that the sub-vectors tile it
        ms = [m for m in range(1, min(dim, max(PQ_CODE_BYTES)) + 1) if dim % m == 0]
    return ms


def _estimate_bytes(rows: int, dim: int, nlist: int, m: int) -> int:
    """IVF-PQ index size (file and RAM): codes + ids, coarse centroids (+ their HNSW graph), PQ codebooks."""
    graph = nlist * 32 * 2 * 4 if nlist >= HNSW_FROM_NLIST else 0
    return rows * (m + ID_BYTES) + nlist * dim * 4 + graph + 256 * dim * 4 + nlist * 48 + (1 << 16)


def _default_nlist(rows: int) -> int:
    target = min(math.sqrt(rows), rows / MIN_TRAIN_PER_LIST, MAX_NLIST)
    if target < 1:
        return 1
    nlist = 2 ** round(math.log2(target))
    while nlist > 1 and nlist > rows / MIN_TRAIN_PER_LIST:
        nlist //= 2
    return int(min(nlist, MAX_NLIST))


def default_nprobe(nlist: int) -> int:
    """The nprobe used when none is given: nlist/32, at least 8 (all lists when fewer)."""
    return int(min(nlist, max(8, nlist // 32)))


def choose_factory(rows: int, dim: int, memory_budget: str | int = "2GB") -> dict:
    """The IVF-PQ layout :func:`build_index` uses for `rows` x `dim` under `memory_budget`.

    Rule:

    - ``nlist``: the power of two nearest ``sqrt(rows)``, lowered until every list has >= 39
      training rows, at most 65536 (1M rows: 1024 lists of ~1000 rows). Smaller than faiss's
      usual 4-16 sqrt(rows) on purpose: each row's list is found by a brute-force pass over the
      centroids, and k-means makes 10 such passes over 40 * nlist rows, so 4 * sqrt(rows) builds
      4-5x slower (1M x 512 on 2 cores: ~2 min instead of ~30 s) for no recall (PQ's error
      dominates, and :func:`workbench.scoring.neighbors.search` re-ranks). From 16384 lists an HNSW graph
      finds the list (``IVF16384_HNSW32``), so that adding 100M+ rows stays affordable.
    - ``m``, the PQ code size in bytes a row (8-bit codes; ``m`` divides ``dim``, sub-vectors of
      >= 4 dims, at most 64): the largest whose estimated index size fits the budget:
      ``rows * (m + 8)`` (code + int64 id) + centroids ``nlist * dim * 4`` + PQ codebooks
      ``256 * dim * 4``. WorkbenchError when even the smallest code does not fit.
    - metric inner product (cosine on unit rows); no OPQ (slow to train): pass e.g.
      ``factory="OPQ64,IVF4096,PQ64"`` to :func:`build_index` for it.
    - ``nprobe`` default: :func:`default_nprobe`.
    """
    budget = parse_bytes(memory_budget)
    if rows < 1:
        raise WorkbenchError("there are no rows to index")
    nlist = _default_nlist(rows)
    ms = _divisors_m(dim)
    fits = [m for m in ms if _estimate_bytes(rows, dim, nlist, m) <= budget]
    if not fits:
        need = _estimate_bytes(rows, dim, nlist, ms[0])
        raise WorkbenchError(
            f"a memory budget of {_fmt_bytes(budget)} cannot hold an index of {rows:,} {dim}-d rows: the smallest "
            f"codes ({ms[0]} bytes a row, plus {ID_BYTES} bytes of id) need about {_fmt_bytes(need)}; "
            f"raise the budget to at least {_fmt_bytes(need)}"
        )
    m = max(fits)
    quantizer = "_HNSW32" if nlist >= HNSW_FROM_NLIST else ""
    return {
        "factory": f"IVF{nlist}{quantizer},PQ{m}",
        "nlist": nlist,
        "code_bytes": m,
        "nprobe": default_nprobe(nlist),
        "estimated_bytes": _estimate_bytes(rows, dim, nlist, m),
        "memory_budget": budget,
    }


def default_index_path(collection, kind: str = "image") -> Path:
    """Where an index built for this collection goes by default: ``<root>/.workbench/<kind>.ivfpq.index``."""
    _check_kind(kind)
    return _root(collection) / INDEX_DIR / f"{kind}.ivfpq.index"


def sidecar_path(index_path: str | Path) -> Path:
    return Path(str(index_path) + SIDECAR_SUFFIX)


_write_atomic = write_atomic  # the one atomic write (workbench.io.files)


def build_index(collection, out: str | Path, kind: str = "image", memory_budget: str | int = "2GB",
                factory: str | None = None, train_rows: int | None = None, progress: bool = False) -> dict:
    """Build a faiss index of the collection's `kind` embeddings at `out`, and its JSON sidecar.

    The layout comes from :func:`choose_factory` (IVF-PQ sized so the index fits `memory_budget`)
    unless `factory` (a faiss index_factory string, inner-product metric) is given (the budget then
    only bounds the training sample and the chunks). Training uses
    `train_rows` rows (default ``min(rows, max(40 * nlist, 10000), 200000)``, and no more than a
    quarter of the budget as float32) drawn at random across all shards; the rows are then added in
    global row order, chunk by chunk, with their global row ids as faiss ids (invalid rows are left
    out). The working memory is the index, the training sample and one chunk.

    Both files are written atomically (temporary file + rename): `out`, and ``out + ".json"`` with
    the factory, rows, indexed vectors, dim, kind, the collection's fingerprint and the default
    nprobe. Returns that dict.

    `progress` (:mod:`workbench.io.progress`): True prints each stage and a bar over the rows added
    on stderr; a callable ``(done, total)`` follows the rows added.
    """
    faiss = _faiss()
    t0 = time.perf_counter()
    dim = _embedding_dim(collection, kind)
    n = len(collection)
    budget = parse_bytes(memory_budget)
    if factory is None:
        plan = choose_factory(n, dim, budget)
    else:
        if n < 1:
            raise WorkbenchError("there are no rows to index")
        plan = {"factory": factory, "nlist": None, "code_bytes": None, "nprobe": None,
                "estimated_bytes": None, "memory_budget": budget}
    out = Path(out)
    if out.exists() and read_sidecar(out) is None:
        raise WorkbenchError("refusing to overwrite a file build_index did not write (no workbench sidecar beside "
                             "it): remove it or choose another path", out)
    if train_rows is not None and train_rows < 1:
        raise WorkbenchError(f"train_rows must be positive, not {train_rows}")
    log = ((lambda msg: print(f"[build_index] {msg}", file=sys.stderr, flush=True)) if progress and not callable(progress)
           else (lambda msg: None))

    try:
        index = faiss.index_factory(dim, plan["factory"], faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise WorkbenchError(f"faiss cannot make an index from factory {plan['factory']!r}: {_faiss_message(exc)}") from None
    ivf = _ivf(index)
    nlist = int(ivf.nlist) if ivf is not None else None
    if plan["nlist"] is None and nlist is not None:
        plan["nlist"], plan["nprobe"] = nlist, default_nprobe(nlist)

    # -- train on a sample drawn across shards
    if not index.is_trained:
        if train_rows is None:
            want = max(40 * (nlist or 1), 10_000)
            train_rows = min(n, want, MAX_TRAIN_ROWS, max(budget // (4 * dim * 4), 1))
        train_rows = int(min(train_rows, n))
        if nlist is not None and train_rows < nlist:
            raise WorkbenchError(f"train_rows ({train_rows:,}) must be at least the number of IVF lists ({nlist:,})")
        rng = np.random.default_rng(SEED)
        sample = np.sort(rng.choice(n, size=train_rows, replace=False)) if train_rows < n else np.arange(n)
        log(f"reading {len(sample):,} training rows")
        x = collection.take_embeddings(sample, kind)
        x = x[np.einsum("ij,ij->i", x, x) > 0.5]  # drop invalid (zeroed) rows
        if len(x) < (nlist or 1):
            raise WorkbenchError(f"only {len(x):,} valid training rows for {nlist:,} IVF lists")
        if factory is None:
            for cp in _clustering_params(ivf):  # few rows per PQ centroid is expected on small collections
                cp.min_points_per_centroid = 1
        if hasattr(ivf, "do_polysemous_training"):
            ivf.do_polysemous_training = False  # minutes at PQ64, and only for Hamming filtering, never used here
        log(f"training {plan['factory']} on {len(x):,} rows")
        try:
            index.train(x)
        except RuntimeError as exc:
            raise WorkbenchError(f"training {plan['factory']!r} failed: {_faiss_message(exc)}") from None
        del x
    else:
        train_rows = 0

    # -- add every valid row, in global row order, with its row id
    chunk_rows = int(max(1024, min(65_536, budget // (8 * dim * 4))))
    with_ids = True
    added = 0
    bar = progress_bar(progress, n, "adding rows to the index", unit="rows", unit_scale=True)
    for ch in collection.iter_embeddings(kind, chunk_rows=chunk_rows, normalize=True):
        data, ids = ch.data, ch.rows
        if with_ids and not ch.valid.all():
            data, ids = data[ch.valid], ids[ch.valid]
        if with_ids:
            try:
                index.add_with_ids(data, ids)
            except RuntimeError:
                if added:
                    raise
                with_ids = False  # e.g. HNSW: sequential ids only, so every row goes in (invalid ones as zeros)
        if not with_ids:
            index.add(ch.data)
        added += len(ch.data)
        bar.update(len(ch.data))
    bar.close()
    if plan["nprobe"] is not None:
        _set_nprobe(index, plan["nprobe"])

    out.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(out, lambda p: faiss.write_index(index, str(p)))
    info = {
        "format": SIDECAR_FORMAT,
        "factory": plan["factory"],
        "metric": "inner_product",
        "kind": kind,
        "rows": n,
        "indexed": int(index.ntotal),
        "skipped_rows": n - int(index.ntotal),
        "dim": dim,
        "fingerprint": collection.fingerprint,
        "collection": str(Path(collection.path).resolve()),
        "nlist": plan["nlist"],
        "code_bytes": plan["code_bytes"],
        "nprobe": plan["nprobe"],
        "train_rows": int(train_rows),
        "memory_budget": budget,
        "estimated_bytes": plan["estimated_bytes"],
        "file_bytes": out.stat().st_size,
        "build_seconds": round(time.perf_counter() - t0, 3),
    }
    _write_atomic(sidecar_path(out), lambda p: p.write_text(json.dumps(info, indent=2) + "\n"))
    log(f"wrote {out} ({_fmt_bytes(info['file_bytes'])}) in {info['build_seconds']:.1f} s")
    return info


def _faiss_message(exc: Exception) -> str:
    """The reason in a faiss exception, without its C++ function signature and source location."""
    text = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    m = re.search(r"\.(?:cpp|h):\d+: (.*)$", text)
    return m.group(1) if m else text


def _ivf(index):
    """The IndexIVF inside `index` (downcast), or None when it has none."""
    faiss = _faiss()
    try:
        return faiss.downcast_index(faiss.extract_index_ivf(index))
    except RuntimeError:
        return None


def _clustering_params(ivf) -> list:
    if ivf is None:
        return []
    out = [ivf.cp]
    if hasattr(ivf, "pq"):
        out.append(ivf.pq.cp)
    return out


def _set_nprobe(index, nprobe: int) -> None:
    ivf = _faiss().extract_index_ivf(index)
    ivf.nprobe = int(min(max(1, nprobe), ivf.nlist))


# -- finding and loading indexes ------------------------------------------------------------------
def _root(collection) -> Path:
    p = Path(collection.path)
    return p if p.is_dir() else p.parent


def find_index(collection, kind: str = "image") -> Path | None:
    """The faiss index of this collection's `kind` embeddings, if one is on disk.

    Looks, in order, for :func:`default_index_path` (``<root>/.workbench/<kind>.ivfpq.index``,
    what :func:`build_index` writes by default), then for the ``<kind>.index`` that clip-retrieval /
    autofaiss write, in ``<root>/``, ``<root>/index/`` and ``<root>/../index/`` (clip-retrieval's
    ``--index_folder`` beside the embeddings folder). Only existence is checked here;
    :func:`workbench.scoring.neighbors.search` refuses an index whose size does not match the collection.
    """
    _check_kind(kind)
    root = _root(collection)
    name = f"{kind}.index"
    for p in (default_index_path(collection, kind), root / name, root / "index" / name, root.parent / "index" / name):
        if p.is_file():
            return p
    return None


def read_sidecar(index_path: str | Path) -> dict | None:
    """The JSON sidecar :func:`build_index` wrote beside an index, or None (foreign index, unreadable)."""
    p = sidecar_path(index_path)
    if not p.is_file():
        return None
    try:
        info = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and info.get("format") == SIDECAR_FORMAT else None


def load_index(path: str | Path, mmap: bool = True):
    """Read a faiss index; memory-mapped and read-only by default (IO_FLAG_MMAP | IO_FLAG_READ_ONLY).

    With mmap an IVF index's inverted lists stay in the file (pages are read as lists are probed),
    so a large index opens at once and costs only what it touches. nprobe is set to the sidecar's
    default when :func:`build_index` wrote one, else, for an index saved with nprobe 1 (faiss's
    default, what most tools leave), to :func:`default_nprobe`.
    """
    faiss = _faiss()
    path = Path(path)
    if not path.is_file():
        raise WorkbenchError("no faiss index at this path", path)
    flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0
    try:
        index = faiss.read_index(str(path), flags)
    except (RuntimeError, MemoryError) as exc:
        raise WorkbenchError(f"cannot read this file as a faiss index ({_faiss_message(exc)})", path) from None
    ivf = _ivf(index)
    if ivf is not None:
        info = read_sidecar(path)
        if info and isinstance(info.get("nprobe"), int):
            _set_nprobe(index, info["nprobe"])
        elif ivf.nprobe <= 1:
            _set_nprobe(index, default_nprobe(int(ivf.nlist)))
    return index


# -- searching an index ---------------------------------------------------------------------------
def index_search(index, queries, k: int = 10, nprobe: int | None = None, exclude_rows=None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k from a faiss index (a faiss.Index, or a path to load).

    Same output contract as :func:`workbench.scoring.neighbors.exact_search`.

    Scores are what the index computes: approximate cosine for an IVF-PQ inner-product index; an L2
    index's squared distances d are turned into cosine as ``1 - d / 2`` (exact for unit vectors).
    faiss's missing results (id -1) become padding (row -1, score -inf), after the real hits.
    `nprobe` applies to this call only (the index's own setting is restored). `exclude_rows` are
    dropped from the results (the index is asked for that many more).
    """
    faiss = _faiss()
    if isinstance(index, (str, Path)):
        index = load_index(index)
    k = _check_k(k)
    q = _prepare_queries(queries, int(index.d), "the index's vectors")
    if index.metric_type not in (faiss.METRIC_INNER_PRODUCT, faiss.METRIC_L2):
        raise WorkbenchError(f"the index uses faiss metric {index.metric_type}: only inner product and L2 are supported")
    excl = _exclude(exclude_rows)
    fetch = k + len(excl)
    if len(q) == 0:
        return np.full((0, k), -np.inf, np.float32), np.full((0, k), -1, np.int64)
    ivf = faiss.extract_index_ivf(index) if nprobe is not None and _ivf(index) is not None else None
    before = ivf.nprobe if ivf is not None else None
    try:
        if ivf is not None:
            _set_nprobe(index, nprobe)
        dist, ids = index.search(q, fetch)
    finally:
        if ivf is not None:
            ivf.nprobe = before
    scores = dist.astype(np.float32)
    if index.metric_type == faiss.METRIC_L2:
        scores = 1.0 - scores / 2.0
    ids = ids.astype(np.int64)
    if len(excl):
        ids = np.where(np.isin(ids, excl), -1, ids)
    return _order(scores, ids, k)


def _check_index(collection, index, kind: str, path: Path | None) -> None:
    """Refuse an index that does not describe this collection's `kind` embeddings."""
    where = path if path is not None else "index"
    info = read_sidecar(path) if path is not None else None
    n = len(collection)
    dim = collection.dim
    if dim is not None and int(index.d) != dim:
        raise WorkbenchError(f"the index holds {index.d}-d vectors, the collection's {kind} embeddings are {dim}-d", where)
    if info is not None:
        if info.get("kind") not in (None, kind):
            raise WorkbenchError(f"this index holds {info['kind']} embeddings, not {kind}", where)
        if info.get("rows") != n:
            raise WorkbenchError(f"stale index: built for {_count(info.get('rows'))} rows, the collection has {n:,}; "
                                 "rebuild it", where)
        if info.get("indexed") != int(index.ntotal):
            raise WorkbenchError(f"the index holds {int(index.ntotal):,} vectors, its sidecar says "
                                 f"{_count(info.get('indexed'))}: one of them was replaced; rebuild it", where)
        if info.get("fingerprint") not in (None, collection.fingerprint):
            warnings.warn(f"{where}: the collection's files changed since this index was built "
                          "(same row count); rebuild it if the embeddings changed", stacklevel=3)
    elif int(index.ntotal) != n:
        raise WorkbenchError(f"stale index: it holds {int(index.ntotal):,} vectors, the collection has {n:,} rows; "
                             "rebuild it (or open the collection it was built for)", where)


def _count(x) -> str:
    return f"{x:,}" if isinstance(x, int) else repr(x)


def resolve_index(collection, kind: str = "image", index="auto", exact_below: int = EXACT_BELOW):
    """What :func:`workbench.scoring.neighbors.search` will use: None for exact search, else ``(index, path or None)``.

    ``index="auto"``: exact search up to `exact_below` rows, else :func:`find_index` (a
    WorkbenchError asks for an index when there is none). ``None``: always exact. A path: that
    index. A faiss.Index: itself. An index is checked against the collection (dim, rows, kind):
    through its sidecar when :func:`build_index` wrote one, else its vector count must equal the
    collection's rows (so pass the path, not a loaded index, for one built with invalid rows left out).
    """
    _check_kind(kind)
    if index is None:
        return None
    if isinstance(index, str) and index == "auto":
        if len(collection) <= exact_below:
            return None
        path = find_index(collection, kind)
        if path is None:
            raise WorkbenchError(
                f"{len(collection):,} rows is more than exact search is used for ({exact_below:,}) and no {kind} "
                f"index was found (looked for {default_index_path(collection, kind)} and clip-retrieval's "
                f"{kind}.index in the collection's folder, its index/ folder and ../index/): build one with "
                "workbench.scoring.faissindex.build_index (`workbench index`), or search exactly (index=None)",
                collection.path)
        index = path
    if isinstance(index, (str, Path)):
        path = Path(index)
        idx = load_index(path)
    else:
        path, idx = None, index
    _check_index(collection, idx, kind, path)
    return idx, path

