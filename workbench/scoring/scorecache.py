"""Score columns cached beside the collection, one parquet file per shard, checked for staleness.

Layout::

    <collection>/.workbench/scores/<column>-<key>/shard_<i>.parquet

``key`` is a digest of the scorer's spec: its kind, parameters, the model behind any prompt or head,
and the contents of any file it reads. Each shard file carries, in its parquet metadata, the spec
and a *stamp* of the shard's source files (names, sizes, modification times): when a source file
changes the stamp no longer matches and the shard is scored again. Files are written to a temporary
name and renamed, so an interrupted run never leaves a half-written cache file.

When the collection's folder is not writable the cache lives under ``$WORKBENCH_CACHE_DIR`` (default
``~/.cache/laion-workbench``), in a folder named after the collection's resolved path.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from workbench.io.files import write_atomic

CACHE_DIR = ".workbench"
_META = b"workbench.score"


def spec_key(spec: dict) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]


def shard_stamp(collection, shard: int) -> str:
    h = hashlib.sha256()
    for p in collection.shards[shard].files:
        st = p.stat()
        h.update(f"{p.name}:{st.st_size}:{st.st_mtime_ns}|".encode())
    h.update(str(collection.shards[shard].rows).encode())
    return h.hexdigest()[:24]


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".probe"):
            pass
        return True
    except OSError:
        return False


def cache_root(collection) -> Path:
    """Where this collection's score columns live (beside it, or the fallback cache folder)."""
    base = collection.path if collection.path.is_dir() else collection.path.parent
    own = base / CACHE_DIR / "scores"
    if os.environ.get("WORKBENCH_CACHE_DIR") is None and _writable(own):
        return own
    home = Path(os.environ.get("WORKBENCH_CACHE_DIR") or Path.home() / ".cache" / "laion-workbench")
    tag = hashlib.sha256(str(collection.path.resolve()).encode()).hexdigest()[:16]
    return home / "scores" / f"{re.sub(r'[^0-9A-Za-z_.-]+', '_', collection.path.name)[:40]}-{tag}"


class ScoreCache:
    """Per-shard score frames of one scorer spec over one collection."""

    def __init__(self, collection, column: str, spec: dict, root: Path | None = None):
        self.collection = collection
        self.spec = spec
        self.key = spec_key(spec)
        slug = re.sub(r"[^0-9A-Za-z_+.-]+", "_", column)[:60]
        self.folder = (root or cache_root(collection)) / f"{slug}-{self.key}"

    def path(self, shard: int) -> Path:
        return self.folder / f"shard_{shard:05d}.parquet"

    def state(self, shard: int) -> str:
        """``fresh``, ``missing`` or ``stale`` (source changed, or a file that does not read back)."""
        p = self.path(shard)
        if not p.exists():
            return "missing"
        try:
            meta = pq.read_schema(p).metadata or {}
            info = json.loads(meta.get(_META, b"{}"))
            rows = pq.ParquetFile(p).metadata.num_rows
        except Exception:  # noqa: BLE001 - a damaged cache file is stale, not an error
            return "stale"
        ok = (info.get("key") == self.key and info.get("stamp") == shard_stamp(self.collection, shard)
              and rows == self.collection.shards[shard].rows)
        return "fresh" if ok else "stale"

    def load(self, shard: int) -> pl.DataFrame:
        return pl.read_parquet(self.path(shard))

    def store(self, shard: int, frame: pl.DataFrame) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        table = frame.to_arrow()
        info = {"key": self.key, "stamp": shard_stamp(self.collection, shard), "spec": self.spec}
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), _META: json.dumps(info, default=str).encode()})
        # float scores neither compress nor dictionary-encode (pyarrow tries a dictionary first and
        # gives up: 16 ms of a 500k-row column's 3 ms write); text columns keep their dictionaries
        words = [f.name for f in table.schema if not pa.types.is_floating(f.type)]
        write_atomic(self.path(shard), lambda tmp: pq.write_table(table, tmp, compression="none", use_dictionary=words))
