"""Writing a subset of a collection (given by row ids or a mask): the one-call form of
:func:`workbench.export.export` for the LAION layout.

Rows keep source order; every written row is byte-identical to its source row (embeddings as
stored, metadata columns as in the source files, types included).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .collection import Collection


def as_rows(collection: Collection, rows) -> np.ndarray:
    """Sorted unique global row ids from ids or a boolean mask over the whole collection."""
    if rows is None:
        return np.arange(len(collection), dtype=np.int64)
    arr = np.asarray(rows)
    if arr.dtype == bool:
        if arr.shape != (len(collection),):
            raise ValueError(f"a mask needs {len(collection)} entries, got {arr.shape}")
        return np.nonzero(arr)[0].astype(np.int64)
    arr = np.unique(arr.astype(np.int64))
    collection.shard_of(arr)  # range check
    return arr


def write_subset(
    collection: Collection,
    dst: str | Path,
    rows=None,
    *,
    rows_per_shard: int = 1_000_000,
    padding: int = 0,
    parameters: dict | None = None,
    model: dict | None = None,
    extras: dict | None = None,
    formats=("laion",),
    engine=None,
    progress=False,
) -> dict:
    """Write the selected rows of `collection` into `dst` in the LAION layout; returns the manifest.

    The destination must be new or empty (or an unfinished write of the same rows, which is
    resumed) and outside the source. `extras` maps a relative path to a ``write(path)`` function:
    sidecar files written atomically and listed (with sha256) in the manifest. See
    :func:`workbench.export.export` for the other formats and engines.
    """
    from .export import export

    return export(collection, dst, rows, formats=formats, rows_per_shard=rows_per_shard, padding=padding,
                  parameters=parameters, model=model, extras=extras, engine=engine, progress=progress).manifest
