"""Content checks over all embeddings, streamed shard by shard: bad rows are reported, never fatal.

Header-level problems (truncated files, pickled arrays, row-count or dim mismatches) are caught
when a collection is opened; this pass reads the data and finds:

- rows holding NaN or inf, and rows of zero norm (flagged; normalised reads zero them);
- rows that are not unit-norm (CLIP embeddings are stored L2-normalised; reads normalise them);
- shards whose mean embedding points elsewhere than the rest: embeddings of another model.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from workbench.io.collection import Collection
from workbench.io.kernels import RowStats, row_stats

UNIT_TOLERANCE = 1e-2  # fp16 storage moves norms by ~1e-3
MODEL_COSINE = 0.5  # shard centroids of one model agree far above this; two models' sit near 0
MIN_CENTROID_NORM = 0.1  # below this the data has no common direction to compare


@dataclass
class ShardCheck:
    shard: int
    file: str
    rows: int
    nonfinite: int
    zero_norm: int
    not_unit: int
    norm_min: float
    norm_max: float
    centroid_norm: float
    centroid_cosine: float | None  # cosine of this shard's centroid to the reference shard's


@dataclass
class ValidationReport:
    kind: str
    shards: list[ShardCheck]
    bad_rows: pl.DataFrame  # row, shard, file, local_row, problem
    other_model: list[ShardCheck] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.bad_rows.height == 0 and not self.other_model and not self.not_unit_rows

    @property
    def not_unit_rows(self) -> int:
        return sum(s.not_unit for s in self.shards)

    def lines(self) -> list[str]:
        out = [f"{self.kind} embeddings: {sum(s.rows for s in self.shards):,} rows in {len(self.shards)} shards checked"]
        counts = self.bad_rows.group_by("problem").len().sort("problem").rows() if self.bad_rows.height else []
        for problem, n in counts:
            first = self.bad_rows.filter(pl.col("problem") == problem).row(0, named=True)
            out.append(f"  {n:,} rows with {problem} (first: {first['file']} row {first['local_row']}, global row {first['row']})")
        for s in self.shards:
            if s.not_unit:
                out.append(
                    f"  {s.file}: {s.not_unit:,} rows are not unit-norm (norms {s.norm_min:.3f}..{s.norm_max:.3f}); "
                    "normalised reads fix this"
                )
        for s in self.other_model:
            out.append(
                f"  {s.file}: its mean embedding has cosine {s.centroid_cosine:.2f} to the first shard's: "
                "it looks like embeddings of a different model"
            )
        if self.ok:
            out.append("  all rows finite and unit-norm; all shards agree")
        return out


def validate(collection: Collection, kind: str = "image", threads: int | None = None) -> ValidationReport:
    """Read every embedding once and report NaN/inf, zero-norm, non-unit rows and foreign shards.

    Shards are scanned in parallel on `threads` threads (default: the CPU count); the kernels
    release the GIL.
    """
    threads = threads or os.cpu_count() or 1

    def scan(i: int) -> RowStats:
        return row_stats(collection.embeddings(i, kind))

    n = len(collection.shards)
    if threads > 1 and n > 1:
        with ThreadPoolExecutor(min(threads, n)) as pool:
            stats = list(pool.map(scan, range(n)))
    else:
        stats = [scan(i) for i in range(n)]
    checks: list[ShardCheck] = []
    bad: list[pl.DataFrame] = []
    ref: np.ndarray | None = None
    for i, st in enumerate(stats):
        where = collection._array(i, kind).where
        norms, finite = st.norms, st.finite
        zero_mask = finite & (norms <= 1e-12)
        good = finite & ~zero_mask
        nonfinite, zero = int((~finite).sum()), int(zero_mask.sum())
        not_unit = int((good & (np.abs(norms - 1.0) > UNIT_TOLERANCE)).sum())
        nmin = float(norms[good].min()) if good.any() else float("nan")
        nmax = float(norms[good].max()) if good.any() else float("nan")
        for mask, problem in ((~finite, "NaN or inf values"), (zero_mask, "zero norm")):
            local = np.nonzero(mask)[0]
            if len(local):
                bad.append(pl.DataFrame({
                    "row": local + int(collection.offsets[i]),
                    "shard": np.full(len(local), i),
                    "file": [where] * len(local),
                    "local_row": local,
                    "problem": [problem] * len(local),
                }))
        centroid = st.total / max(len(norms) - nonfinite - zero, 1)
        cnorm = float(np.linalg.norm(centroid))
        cos = None
        if cnorm >= MIN_CENTROID_NORM:
            if ref is None:
                ref = centroid / cnorm
            cos = float(centroid @ ref / cnorm)
        checks.append(ShardCheck(i, where, len(norms), nonfinite, zero, not_unit, nmin, nmax, cnorm, cos))
    schema = {"row": pl.Int64, "shard": pl.Int64, "file": pl.Utf8, "local_row": pl.Int64, "problem": pl.Utf8}
    bad_rows = pl.concat(bad).cast(schema).sort("row", "problem") if bad else pl.DataFrame(schema=schema)
    other = [c for c in checks if c.centroid_cosine is not None and c.centroid_cosine < MODEL_COSINE]
    return ValidationReport(kind, checks, bad_rows, other)


def validate_kinds(collection: Collection, kind: str = "both") -> list[ValidationReport]:
    """:func:`validate` of the embeddings `kind` names (``image``, ``text`` or ``both``) that the
    collection has, image first; an empty list when it has none of them (metadata only)."""
    kinds = ["image", "text"] if kind == "both" else [kind]
    return [validate(collection, k) for k in kinds
            if (collection.has_embeddings if k == "image" else collection.has_text_embeddings)]
