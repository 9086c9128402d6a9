"""The atomic shard writer: subsets (or generated data) written in the LAION / clip-retrieval layout.

Every file is written under ``DST/.staging/`` first, flushed and fsynced, then moved to its final
name with ``os.replace``: nothing half-written ever sits under a final name. ``manifest.json``
(rows and sha256 per file, the source, the parameters) is written last; a folder without it is
an unfinished write.
"""
from __future__ import annotations

import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from workbench.errors import WriteError
from workbench.io.files import sha256_file as _sha256_file

MANIFEST = "manifest.json"
STAGING = ".staging"
MANIFEST_FORMAT = "laion-workbench/manifest"
MANIFEST_VERSION = 1
_HASH_BLOCK = 1 << 22


def sha256_file(path: str | Path) -> str:
    """The hex sha256 of a file (:func:`workbench.io.files.sha256_file`, in `_HASH_BLOCK` reads)."""
    return _sha256_file(path, _HASH_BLOCK)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def check_not_inside(dst: Path, sources: list[Path]) -> None:
    """Refuse a destination that is a source, lies inside one, or contains one."""
    def resolved(p: Path, what: str) -> Path:
        try:
            return p.resolve()
        except (RuntimeError, OSError):  # Python 3.11 raises RuntimeError for a symlink loop
            from workbench.io.npyfile import symlink_loop

            raise WriteError(f"the {what} is {symlink_loop(p) or 'a path that cannot be resolved'}", p) from None

    d = resolved(dst, "destination")
    for src in sources:
        s = resolved(Path(src), "source")
        if d == s or s in d.parents or d in s.parents:
            raise WriteError(f"refusing to write into the source collection {s}", dst)


def _npy_header(shape: tuple[int, int], dtype: np.dtype, length: int | None = None) -> bytes:
    """A version-1.0 .npy header, padded with spaces to `length` bytes (a multiple of 64) when given."""
    d = "{'descr': %r, 'fortran_order': False, 'shape': (%d, %d), }" % (
        np.lib.format.dtype_to_descr(dtype),
        shape[0],
        shape[1],
    )
    body = d.encode("latin1")
    total = length if length is not None else -(-(10 + len(body) + 1) // 64) * 64
    pad = total - 10 - len(body) - 1
    if pad < 0:
        raise WriteError(f"the npy header for shape {shape} does not fit in {length} bytes")
    return b"\x93NUMPY\x01\x00" + (total - 10).to_bytes(2, "little") + body + b" " * pad + b"\n"


class _NpyStream:
    """Appends rows to a .npy file whose final row count is unknown until close."""

    def __init__(self, path: Path, dim: int, dtype: np.dtype):
        self.path, self.dim, self.dtype, self.rows = path, dim, np.dtype(dtype), 0
        self.header_len = len(_npy_header((10**15, dim), self.dtype))
        self.f = open(path, "wb")
        self.f.write(b"\0" * self.header_len)

    def write(self, arr: np.ndarray) -> None:
        if arr.ndim != 2 or arr.shape[1] != self.dim:
            raise WriteError(f"expected rows of dim {self.dim}, got shape {arr.shape}", self.path)
        self.f.write(np.ascontiguousarray(arr, dtype=self.dtype).tobytes())
        self.rows += arr.shape[0]

    def close(self) -> None:
        self.f.seek(0)
        self.f.write(_npy_header((self.rows, self.dim), self.dtype, self.header_len))
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()


def shard_name(number: int, padding: int) -> str:
    return str(number).zfill(padding) if padding else str(number)


class ShardWriter:
    """Write rows into DST as aligned ``img_emb/``, ``text_emb/``, ``metadata/`` shards.

    Call :meth:`add` repeatedly; a shard is cut every ``rows_per_shard`` rows. ``padding`` is the
    number of digits of shard numbers (0: unpadded like LAION-400M, 4: LAION-5B). Without
    embeddings (``image=None`` on every add) only ``metadata/`` is written.
    """

    def __init__(
        self,
        dst: str | Path,
        *,
        rows_per_shard: int = 1_000_000,
        padding: int = 0,
        source=None,
        parameters: dict | None = None,
        model: dict | None = None,
    ):
        if rows_per_shard < 1:
            raise WriteError(f"rows_per_shard must be >= 1, got {rows_per_shard}", dst)
        self.dst = Path(dst)
        self.rows_per_shard = int(rows_per_shard)
        self.padding = int(padding)
        self.source = source
        self.parameters = dict(parameters or {})
        self.model = model
        self.manifest: dict | None = None
        self._files: list[dict] = []
        self._extras: list[dict] = []
        self._shards: list[dict] = []
        self._number = 0
        self._open: dict | None = None
        self._kinds: tuple[bool, bool, bool] | None = None  # image, text, metadata present
        self._dim: int | None = None
        self._dtype: np.dtype | None = None
        self._schema: pa.Schema | None = None
        self._closed = False
        self._prepare()

    # -- setup -------------------------------------------------------------------------------
    def _prepare(self) -> None:
        if self.source is not None:
            check_not_inside(self.dst, self.source.source_paths)
        if self.dst.exists():
            if not self.dst.is_dir():
                raise WriteError("destination exists and is not a folder", self.dst)
            leftovers = [p.name for p in self.dst.iterdir() if p.name != STAGING]
            if leftovers:
                raise WriteError(
                    f"destination is not empty ({', '.join(sorted(leftovers)[:5])}); choose an empty or new folder",
                    self.dst,
                )
        try:
            self.dst.mkdir(parents=True, exist_ok=True)
            self.staging = self.dst / STAGING
            if self.staging.exists():
                shutil.rmtree(self.staging)
            self.staging.mkdir()
            probe = self.staging / ".probe"
            probe.write_bytes(b"x")
            probe.unlink()
        except OSError as exc:
            raise WriteError(f"destination is not writable ({exc.strerror})", self.dst) from None

    # -- writing -----------------------------------------------------------------------------
    def add(self, image: np.ndarray | None = None, text: np.ndarray | None = None, metadata: pa.Table | None = None) -> None:
        if self._closed:
            raise WriteError("writer is closed", self.dst)
        n = None
        for part in (image, text, metadata):
            if part is not None:
                m = part.num_rows if isinstance(part, pa.Table) else part.shape[0]
                if n is not None and m != n:
                    raise WriteError(f"image/text/metadata row counts differ ({n} vs {m}) in one add()", self.dst)
                n = m
        if n is None:
            raise WriteError("add() needs at least one of image, text, metadata", self.dst)
        kinds = (image is not None, text is not None, metadata is not None)
        if self._kinds is None:
            self._kinds = kinds
            ref = image if image is not None else text
            if ref is not None:
                self._dim, self._dtype = int(ref.shape[1]), np.dtype(ref.dtype)
                if self._dtype not in (np.dtype("float16"), np.dtype("float32"), np.dtype("float64")):
                    raise WriteError(f"embeddings must be float16, float32 or float64 (written as given), "
                                     f"got {self._dtype}", self.dst)
        elif kinds != self._kinds:
            raise WriteError("every add() must carry the same parts (image/text/metadata)", self.dst)
        start = 0
        while start < n:
            if self._open is None:
                self._open_shard()
            room = self.rows_per_shard - self._open["rows"]
            take = min(room, n - start)
            sl = slice(start, start + take)
            if image is not None:
                self._open["image"].write(image[sl])
            if text is not None:
                self._open["text"].write(text[sl])
            if metadata is not None:
                self._write_metadata(metadata.slice(start, take))
            self._open["rows"] += take
            start += take
            if self._open["rows"] >= self.rows_per_shard:
                self._close_shard()

    def _open_shard(self) -> None:
        name = shard_name(self._number, self.padding)
        image, text, meta = self._kinds
        parts: dict = {"rows": 0, "name": name, "paths": []}
        if image:
            parts["image"] = _NpyStream(self._stage(f"img_emb/img_emb_{name}.npy"), self._dim, self._dtype)
            parts["paths"].append(f"img_emb/img_emb_{name}.npy")
        if text:
            parts["text"] = _NpyStream(self._stage(f"text_emb/text_emb_{name}.npy"), self._dim, self._dtype)
            parts["paths"].append(f"text_emb/text_emb_{name}.npy")
        if meta:
            parts["meta_path"] = f"metadata/metadata_{name}.parquet"
            parts["meta"] = None
            parts["paths"].append(parts["meta_path"])
        self._open = parts

    def _stage(self, rel: str) -> Path:
        p = self.staging / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def _write_metadata(self, table: pa.Table) -> None:
        if self._schema is None:
            self._schema = table.schema
        elif not table.schema.equals(self._schema):
            table = _conform(table, self._schema, self.dst)
        if self._open["meta"] is None:
            self._open["meta"] = pq.ParquetWriter(self._stage(self._open["meta_path"]), self._schema)
        self._open["meta"].write_table(table)

    def _close_shard(self) -> None:
        parts, self._open = self._open, None
        for key in ("image", "text"):
            if key in parts:
                parts[key].close()
        if "meta_path" in parts:
            w = parts["meta"]
            if w is None:  # an image-only add would never open it
                w = pq.ParquetWriter(self._stage(parts["meta_path"]), self._schema)
            w.close()
            with open(self.staging / parts["meta_path"], "rb+") as f:
                os.fsync(f.fileno())
        for rel in parts["paths"]:
            self._publish(rel, parts["rows"], self._files)
        self._shards.append({"name": parts["name"], "rows": parts["rows"], "files": parts["paths"]})
        self._number += 1

    def _publish(self, rel: str, rows: int | None, into: list[dict]) -> None:
        staged, final = self.staging / rel, self.dst / rel
        entry = {"path": rel, "bytes": staged.stat().st_size, "sha256": sha256_file(staged)}
        if rows is not None:
            entry["rows"] = rows
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged, final)
        _fsync_dir(final.parent)
        into.append(entry)

    def write_extra(self, rel: str, write: Callable[[Path], None]) -> None:
        """Write a sidecar file atomically: `write(tmp_path)` fills it; it is listed in the manifest."""
        rel = Path(rel).as_posix()
        if rel.startswith(("/", "..")) or rel == MANIFEST:
            raise WriteError(f"invalid sidecar path {rel!r}", self.dst)
        staged = self._stage(rel)
        write(staged)
        if not staged.exists():  # e.g. np.save appends .npy when the name lacks it
            raise WriteError(f"sidecar writer did not create {rel}", self.dst)
        with open(staged, "rb+") as f:
            os.fsync(f.fileno())
        self._publish(rel, None, self._extras)

    # -- finishing -----------------------------------------------------------------------------
    def close(self) -> dict:
        if self._closed:
            return self.manifest
        if self._open is not None and self._open["rows"] > 0:
            self._close_shard()
        self._closed = True
        rows = sum(s["rows"] for s in self._shards)
        manifest = {
            "format": MANIFEST_FORMAT,
            "version": MANIFEST_VERSION,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "layout": "embeddings" if self._kinds and (self._kinds[0] or self._kinds[1]) else "parquet",
            "rows": rows,
            "dim": self._dim,
            "dtype": None if self._dtype is None else str(self._dtype),
            "rows_per_shard": self.rows_per_shard,
            "padding": self.padding,
            "shards": self._shards,
            "files": self._files,
            "extra_files": self._extras,
            "source": None if self.source is None else self.source.identity(),
            "model": self.model,
            "parameters": self.parameters,
        }
        tmp = self.staging / MANIFEST
        with open(tmp, "w") as f:
            json.dump(manifest, f, indent=1, sort_keys=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.dst / MANIFEST)
        _fsync_dir(self.dst)
        shutil.rmtree(self.staging, ignore_errors=True)
        self.manifest = manifest
        return manifest

    def abort(self) -> None:
        """Drop the shard being written; finished shards stay, and no manifest is written."""
        if self._open is not None:
            for key in ("image", "text"):
                if key in self._open:
                    self._open[key].f.close()
            if self._open.get("meta") is not None:
                self._open["meta"].close()
            self._open = None
        self._closed = True
        shutil.rmtree(self.staging, ignore_errors=True)

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _conform(table: pa.Table, schema: pa.Schema, where) -> pa.Table:
    """Bring a metadata table to the shard's schema: same columns, same order, cast; missing -> null."""
    cols = []
    for field in schema:
        if field.name in table.column_names:
            col = table.column(field.name)
            try:
                cols.append(col.cast(field.type) if col.type != field.type else col)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise WriteError(f"metadata column {field.name!r} cannot be written as {field.type}: {exc}", where) from None
        else:
            cols.append(pa.nulls(table.num_rows, field.type))
    extra = set(table.column_names) - set(schema.names)
    if extra:
        raise WriteError(f"metadata columns {sorted(extra)} are not in the first shard's schema", where)
    return pa.Table.from_arrays(cols, schema=schema)
