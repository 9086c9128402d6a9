"""Placing every row on a fitted map: the nearest sample rows of each row, and its position.

:class:`Placer` holds what placement needs once UMAP is fitted (the sample's neighbour search,
the sample's row ids and fitted positions) and places one shard at a time
(:meth:`Placer.place_shard`); :func:`project` runs it shard by shard here, or, with an engine, as
one task per shard (:func:`place_task`), the placer passed through a file beside the collection's
caches (``Placer.save`` / ``Placer.load``: plain ``.npy`` arrays, never a pickle) so that no task
carries the sample. Chunks never cross a shard, so both ways give the same bytes (with float32
products, up to the BLAS library's rounding at another thread count or product shape: one row in
4M moved by 4e-9 in ``benchmarks/bench_place.py``; bfloat16 products were identical).
"""
from __future__ import annotations

import math
import os
import secrets
from pathlib import Path

import numpy as np

from workbench.errors import WorkbenchError
from workbench.io.files import write_atomic
from workbench.io.kernels import normalize_rows
from workbench.scoring.kmeans import faiss_kmeans

EXACT_PLACE_MAX = 5_000  # sample sizes up to this are searched exactly during placement (exact costs n x m)
PLACE_PROBE = 8  # large samples: rows compared per query ~ PLACE_PROBE mean lists (nearest lists first)
PLACE_CHUNK_ROWS = 262_144  # rows searched together: fuller product tiles; ~0.8 GB a worker at 512-d
PLACE_TEMPERATURE = 0.05  # cosine units: a neighbour 0.05 less similar than the nearest weighs 1/e as much
PLACE_TILE = 256  # queries per product; products come in a few fixed shapes (see _Neighbours)
PLACE_PAD = 128  # candidate blocks padded to a multiple of this many rows
PRECISIONS = ("auto", "bfloat16", "float32")
PLACE_PRECISION = "auto"  # of the grouped search's products: bfloat16 where the CPU has AMX, else float32


def half_precision_is_fast() -> bool:
    """True where this CPU multiplies bfloat16 matrices in hardware (AMX tiles: Intel Sapphire Rapids
    and later), where a bfloat16 product runs ~4x faster than float32 (measured in
    ``benchmarks/bench_umap.py``). Decided from the CPU's features, never from a timing, so that
    the same machine always places the same bytes."""
    import torch

    if os.environ.get("WORKBENCH_NO_NUMBA"):  # the numpy-only test runs: float32, the portable products
        return False
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    try:
        return bool(probe and probe()) and _allow_amx(torch)
    except RuntimeError:  # a build or kernel that refuses the tiles: float32
        return False


def _allow_amx(torch) -> bool:
    """Ask the kernel for AMX tile state for this process (once per process; a forked child inherits
    it, a fresh one does not: without it the CPU library falls back to far slower bfloat16 code)."""
    init = getattr(torch.cpu, "_init_amx", None)
    try:
        return bool(init and init())
    except RuntimeError:
        return False


def resolve_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise WorkbenchError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    if precision == "auto":
        return "bfloat16" if half_precision_is_fast() else "float32"
    return precision


class _Neighbours:
    """The `k` most cosine-similar sample rows of query rows.

    Up to ``EXACT_PLACE_MAX`` sample rows: exact (faiss ``IndexFlatIP``, blocked BLAS). Larger
    samples: the sample is split into ~2 sqrt(m) lists by spherical k-means (faiss); a query
    is compared with the rows of the lists nearest to *its* nearest list's centroid (that list
    first, then the next nearest while their rows stay within ``PLACE_PROBE`` mean list sizes:
    big lists near many others would otherwise make the cost uneven). Queries are grouped by that
    list, and each group is compared with its list's candidates in a few matrix products (BLAS
    speed; faiss's per-query inverted-file scan re-reads its lists from memory for every query and
    was ~10x slower here), then a numba kernel keeps each query's top k (ties: the lower sample
    row first).

    ``precision="bfloat16"`` (the default where :func:`half_precision_is_fast`) runs the grouped
    products in bfloat16 (float32 sums, similarities rounded to bfloat16: ~0.004 near 1, which
    moves a row's weights by a few percent and its position by a small fraction of the gap
    between sub-topics; see ``benchmarks/RESULTS.md``), else in float32. The CPU library compiles
    a bfloat16 kernel per product shape, so the products come in a few fixed shapes: queries in
    tiles of ``PLACE_TILE`` (padded to a multiple of 32) against each list's candidates gathered
    into one block padded to a multiple of ``PLACE_PAD`` rows (the padding never chosen). Its
    scratch buffers are kept between calls, so one search serves one thread at a time."""

    def __init__(self, sample: np.ndarray, k: int, seed: int | None, precision: str = "auto"):
        m, d = sample.shape
        self.k = min(k, m)
        self._flat = None
        self.cand = None
        self.method = "exact"
        self.precision = "float32"
        self.perm = np.arange(m)
        self.sample = sample
        if m <= EXACT_PLACE_MAX:
            return
        nlist = int(min(max(8, round(2 * math.sqrt(m))), max(1, m // 39)))
        cent, own = faiss_kmeans(sample, nlist, niter=10, seed=seed or 0,
                                 max_points_per_centroid=max(256, -(-m // nlist)), assign=True)
        perm = np.argsort(own, kind="stable")  # the sample sorted by list: each list a contiguous slice
        bounds = np.searchsorted(own[perm], np.arange(nlist + 1))
        sizes = np.diff(bounds)
        budget = PLACE_PROBE * m / nlist  # candidate rows per query: the cost of a search
        near = np.argsort(-(cent @ cent.T), axis=1, kind="stable")
        slices = []
        for row in near:  # the nearest lists, own first, while they fit the budget (two at least)
            row = row[sizes[row] > 0]
            take = max(2, int(np.searchsorted(np.cumsum(sizes[row]), budget, side="right")))
            slices.append([(int(bounds[j]), int(bounds[j + 1])) for j in row[:take]])
        self._grouped(np.ascontiguousarray(sample[perm]), perm, cent, slices,  # the caller may drop its copy
                      resolve_precision(precision))

    def _grouped(self, sorted_sample: np.ndarray, perm: np.ndarray, cent: np.ndarray, slices: list,
                 precision: str) -> None:
        import torch

        self.torch = torch
        self._buffers = {}
        self.precision = precision
        self.slices = slices
        self.cand = [torch.from_numpy(np.concatenate([np.arange(a, b) for a, b in sl]) if sl else np.zeros(0, np.int64))
                     for sl in slices]  # positions in the sorted sample of each list's candidates
        self.cent_np = cent
        self.perm = perm
        self.sample = sorted_sample
        self.dtype = torch.bfloat16 if precision == "bfloat16" else torch.float32
        if precision == "bfloat16":
            _allow_amx(torch)  # a process started afresh (a Ray worker) must ask Linux for the AMX tiles
        self.sample_h = torch.from_numpy(self.sample).to(self.dtype)  # float32: no copy
        cent_h = torch.from_numpy(cent).to(self.dtype)  # padded to a multiple of 64 rows (faster products)
        self.cent_h = torch.cat([cent_h, cent_h.new_zeros(-len(cent_h) % 64, cent_h.shape[1])])
        self.padded = [torch.cat([c, c.new_zeros(-len(c) % PLACE_PAD)]) for c in self.cand]
        if max(map(len, self.padded), default=0) >= 1 << 20:  # the top-k kernel packs columns in 20 bits
            raise WorkbenchError("a list of the map's sample has over a million candidates: use a smaller sample")
        self.method = (f"grouped: {len(cent)} lists, ~{np.mean([len(c) for c in self.cand]):.0f} candidates"
                       + (", bfloat16 products" if precision == "bfloat16" else ""))

    def arrays(self) -> dict[str, np.ndarray]:
        """The search as plain arrays (:meth:`from_arrays` rebuilds it exactly)."""
        out = {"k": np.array(self.k), "perm": self.perm, "sample": self.sample}
        if self.cand is not None:
            out["cent"] = self.cent_np
            out["precision"] = np.array(self.precision)
            out["slices"] = np.array([(j, a, b) for j, sl in enumerate(self.slices) for a, b in sl], np.int64).reshape(-1, 3)
        return out

    @classmethod
    def from_arrays(cls, a: dict) -> "_Neighbours":
        nb = cls.__new__(cls)
        nb.k, nb._flat, nb.cand, nb.method, nb.precision = int(a["k"]), None, None, "exact", "float32"
        nb.perm, nb.sample = np.asarray(a["perm"]), np.ascontiguousarray(a["sample"])
        if "cent" in a:
            cent = np.ascontiguousarray(a["cent"])
            slices = [[] for _ in range(len(cent))]
            for j, lo, hi in np.asarray(a["slices"]).tolist():
                slices[j].append((lo, hi))
            nb._grouped(nb.sample, nb.perm, cent, slices, str(a["precision"]))  # the driver's choice, never re-decided
        return nb

    def queries(self, block: np.ndarray):
        """(rows of `block` as this search takes them: unit rows, float32 or a bfloat16 tensor;
        valid: False for NaN, inf or zero rows, which become zeros)."""
        if self.precision != "bfloat16":
            return normalize_rows(block)
        torch = self.torch
        if block.dtype == np.float16:
            from workbench.map.placement_numba import unit_bf16

            out = self._scratch("queries", block.shape).view(torch.int16).numpy().view(np.uint16)
            valid = np.empty(len(block), bool)
            if len(block):
                unit_bf16(np.ascontiguousarray(block).view(np.ndarray).view(np.uint16), out, valid)
            return torch.from_numpy(out.view(np.int16)).view(torch.bfloat16), valid  # valid until the next call
        x, valid = normalize_rows(block)
        return torch.from_numpy(x).to(torch.bfloat16), valid

    def release(self) -> None:
        """Drop the scratch buffers (:meth:`_scratch`)."""
        self._buffers = {}

    def _scratch(self, name: str, shape: tuple):
        """A buffer of the search's dtype kept between chunks (a fresh block of this size is mapped
        anew by the allocator each time, and its page faults cost as much as the sorted copy)."""
        torch = self.torch
        size = math.prod(shape)
        buf = self._buffers.get(name)
        if buf is None or buf.numel() < size:
            buf = self._buffers[name] = torch.empty(size, dtype=self.dtype)
        return buf[:size].view(shape)

    @property
    def flat(self):
        """An exact index over the (sorted) sample, built on first use."""
        if self._flat is None:
            import faiss

            self._flat = faiss.IndexFlatIP(self.sample.shape[1])
            self._flat.add(self.sample)
        return self._flat

    def search(self, q) -> tuple[np.ndarray, np.ndarray]:
        """(similarities, sample row indices), each (len(q), k), best first, of unit rows `q`
        (float32, or as :meth:`queries` gives them)."""
        if self.cand is None:
            return self.flat.search(q, self.k)
        return self._search_grouped(q)

    def _search_grouped(self, q) -> tuple[np.ndarray, np.ndarray]:
        from workbench.map.placement_numba import argmax, top_k

        torch, k, tile = self.torch, self.k, PLACE_TILE
        qh = q if isinstance(q, torch.Tensor) else torch.from_numpy(q).to(self.dtype)
        n, d = qh.shape
        lists = len(self.cand)
        # every product and copy writes into a scratch buffer (see _scratch), in a few fixed shapes
        block = 16 * tile  # the nearest list, in blocks of one shape (the last one padded)
        qb = self._scratch("block", (block, d))
        near = self._scratch("near", (block, self.cent_h.shape[0]))
        top = np.empty(n, np.uint16 if lists <= 1 << 16 else np.int64)  # 16 bits: argsort is a radix sort
        for a in range(0, n, block):
            m = min(block, n - a)
            src = qh[a:a + m]
            if m < block:
                qb[:m] = src
                qb[m:] = 0
                src = qb
            torch.matmul(src, self.cent_h.T, out=near)
            argmax(_bits(near), m, lists, top[a:a + m])
        order = np.argsort(top, kind="stable")
        bounds = np.searchsorted(top[order], np.arange(lists + 1))
        # the queries sorted by list, plus a tile of zeros: every tile is a slice of PLACE_TILE / 32
        # shapes, its spare rows the next list's queries (or zeros), ignored
        qs = self._scratch("sorted", (n + tile, d))
        torch.index_select(qh, 0, torch.from_numpy(order), out=qs[:n])
        qs[n:] = 0
        cands = self._scratch("cands", (max(len(p) for p in self.padded), d))
        prod = self._scratch("products", (tile * cands.shape[0],))
        bits = np.empty((n, k), np.uint32)
        pos = np.empty((n, k), np.int64)
        exact = []
        for j in np.flatnonzero(np.diff(bounds)):
            lo, hi = int(bounds[j]), int(bounds[j + 1])
            size = len(self.cand[j])
            if size < k:
                exact.append(order[lo:hi])
                continue
            width = len(self.padded[j])
            cj = cands[:width]
            torch.index_select(self.sample_h, 0, self.padded[j], out=cj)
            for t in range(lo, hi, tile):
                m = min(tile, hi - t)
                rows = m + (-m % 32)
                out = prod[:rows * width].view(rows, width)
                torch.matmul(qs[t:t + rows], cj.T, out=out)
                top_k(_bits(out), m, size, k, bits[t:t + m], pos[t:t + m])
            pos[lo:hi] = self.cand[j].numpy()[pos[lo:hi]]
        sims = np.empty((n, k), np.float32)
        idx = np.empty((n, k), np.int64)
        sims[order], idx[order] = bits.view(np.float32), pos
        if exact:  # candidate blocks smaller than k: those rows searched exactly
            sel = np.concatenate(exact)
            sims[sel], idx[sel] = self.flat.search(qh.index_select(0, torch.from_numpy(sel)).float().numpy(), k)
        return sims, self.perm[idx]


def _bits(t) -> np.ndarray:
    """A bfloat16 or float32 tensor's bit patterns as an int16 or int32 array (no copy)."""
    import torch

    return t.view(torch.int16 if t.dtype == torch.bfloat16 else torch.int32).numpy()


def _place(sims: np.ndarray, idx: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Similarity-weighted means (see the module docstring) of `pos` rows `idx` (n, k).

    In float64, the k terms added in a fixed order, then rounded to float32, so that the result
    does not depend on which SIMD path numpy's float32 reductions take (memory alignment); the
    numba kernel and the numpy fallback give the same bytes."""
    from workbench.io.kernels import _numba

    w = sims.astype(np.float64)
    w -= w[:, :1].copy()
    w /= PLACE_TEMPERATURE
    np.exp(w, out=w)
    pos = np.asarray(pos, np.float64)
    if _numba() is not None:
        from workbench.map.placement_numba import weighted_means

        out = np.empty((len(w), 2), np.float32)
        weighted_means(w, np.ascontiguousarray(idx), pos, out)
        return out
    w[idx < 0] = 0
    p = pos[np.maximum(idx, 0)]  # (n, k, 2)
    num = np.zeros((len(w), 2))
    den = np.zeros(len(w))
    for j in range(w.shape[1]):
        num += w[:, j, None] * p[:, j]
        den += w[:, j]
    return (num / den[:, None]).astype(np.float32)


class Placer:
    """What placing rows needs once UMAP is fitted: the neighbour search over the sample, the
    sample's row ids (sorted) and their fitted positions."""

    def __init__(self, x: np.ndarray | None, k: int, seed: int | None, rows: np.ndarray, fitted: np.ndarray,
                 nb: _Neighbours | None = None):
        self.nb = nb if nb is not None else _Neighbours(x, k, seed, PLACE_PRECISION)
        self.rows, self.fitted = np.asarray(rows, np.int64), np.asarray(fitted, np.float32)

    def place_shard(self, collection, i: int, kind: str) -> tuple[np.ndarray, int]:
        """(positions of shard `i`'s rows (float32, NaN for invalid rows; sample rows at their
        fitted positions), how many rows were placed)."""
        a, b = int(collection.offsets[i]), int(collection.offsets[i + 1])
        out = np.full((b - a, 2), np.nan, np.float32)
        lo, hi = np.searchsorted(self.rows, [a, b])
        out[self.rows[lo:hi] - a] = self.fitted[lo:hi]
        placed = 0
        rows = self.rows
        try:
            for ch in collection.iter_embeddings(kind, chunk_rows=PLACE_CHUNK_ROWS, shards=[i], normalize=False):
                q, valid = self.nb.queries(ch.data)
                m = len(q)
                local = np.arange(ch.start, ch.start + m, dtype=np.int64)
                j = np.searchsorted(rows, local)
                in_sample = (j < len(rows)) & (rows[np.minimum(j, len(rows) - 1)] == local)
                todo = valid & ~in_sample
                count = int(np.count_nonzero(todo))
                at = ch.start - a
                if count > m // 2:  # most of the chunk: search it whole rather than copy the rows out
                    s, idx = self.nb.search(q)
                    out[at:at + m][todo] = _place(s[todo], idx[todo], self.fitted)
                elif count:
                    pick = np.flatnonzero(todo)
                    s, idx = self.nb.search(np.ascontiguousarray(q[todo]) if isinstance(q, np.ndarray)
                                            else q.index_select(0, self.nb.torch.from_numpy(pick)))
                    out[at + pick] = _place(s, idx, self.fitted)
                placed += count
        finally:  # the search's scratch buffers: kept between chunks, not while the worker idles
            self.nb.release()
        return out, placed

    def save(self, folder: Path) -> Path:
        """The placer as one ``.npz`` of plain arrays in `folder` (for tasks on other processes or
        nodes: `folder` must be on a file system they share); the caller removes it."""
        folder = Path(folder)
        path = folder / f".placer-{secrets.token_hex(6)}.npz"
        arrays = {**self.nb.arrays(), "rows": self.rows, "fitted": self.fitted}
        folder.mkdir(parents=True, exist_ok=True)

        def write(tmp):
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)

        write_atomic(path, write)
        return path

    @classmethod
    def load(cls, path) -> "Placer":
        with np.load(path, allow_pickle=False) as z:
            a = {k: z[k] for k in z.files}
        return cls(None, 0, None, a["rows"], a["fitted"], nb=_Neighbours.from_arrays(a))


_LOADED: dict[str, Placer] = {}  # per worker process: the placer of the current map, read once


def place_task(task: tuple) -> tuple[np.ndarray, int]:
    """An engine task: place shard `i` with the placer saved at `path`."""
    collection, i, kind, path = task
    placer = _LOADED.get(path)
    if placer is None:
        _LOADED.clear()
        placer = _LOADED[path] = Placer.load(path)
    return placer.place_shard(collection, i, kind)
