"""Writing a subset of a collection (given by row ids or a mask) with the atomic shard writer.

Rows keep source order; every written row is byte-identical to its source row (embeddings as
stored, metadata columns as in the source files, types included).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .collection import Collection
from .errors import ShardError
from .writer import ShardWriter

CHUNK_ROWS = 65_536


def _source_table(collection: Collection, i: int) -> pa.Table | None:
    s = collection.shards[i]
    if s.metadata is None:
        return None
    try:
        table = pq.read_table(s.metadata)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ShardError(f"cannot read metadata ({exc})", s.metadata) from None
    if s.success_only and "status" in table.column_names:
        table = table.filter(pc.equal(table.column("status"), "success"))
    if table.num_rows != s.rows:
        raise ShardError(f"has {table.num_rows} rows now, {s.rows} when the collection was opened", s.metadata)
    return table


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
    chunk_rows: int = CHUNK_ROWS,
    extras: dict | None = None,
) -> dict:
    """Write the selected rows of `collection` into `dst` in the LAION layout; returns the manifest.

    The destination must be new or empty and outside the source. `extras` maps a relative path to a
    ``write(path)`` function: sidecar files written atomically and listed (with sha256) in the manifest.
    """
    selected = as_rows(collection, rows)
    has_img, has_txt = collection.has_embeddings, collection.has_text_embeddings
    has_meta = any(s.metadata is not None for s in collection.shards)
    params = {"selected_rows": int(len(selected)), **(parameters or {})}
    if model is None:
        model = collection.model_identity  # a subset keeps its source's model identity
    writer = ShardWriter(dst, rows_per_shard=rows_per_shard, padding=padding, source=collection,
                         parameters=params, model=model)
    with writer:
        shard_ids = collection.shard_of(selected)
        for i in np.unique(shard_ids):
            i = int(i)
            local = selected[shard_ids == i] - collection.offsets[i]
            table = _source_table(collection, i) if has_meta else None
            img = collection.embeddings(i, "image") if has_img else None
            txt = collection.embeddings(i, "text") if has_txt else None
            for start in range(0, len(local), chunk_rows):
                part = local[start : start + chunk_rows]
                writer.add(
                    image=None if img is None else np.asarray(img[part]),
                    text=None if txt is None else np.asarray(txt[part]),
                    metadata=None if table is None else table.take(pa.array(part)),
                )
        for rel, write in (extras or {}).items():
            writer.write_extra(rel, write)
    return writer.manifest
