"""The output formats of an export, one writer per format, and the parts they are cut into.

A :class:`Part` is a run of kept rows (in source order, as :class:`Piece` s of source shards) that
one task writes; :func:`cut_parts` cuts the kept rows into parts. Each writer takes the collection,
its part, a staging folder and the export's options and returns the files it wrote (path, rows and,
for embeddings, size and sha256): ``laion`` (img_emb/, text_emb/, metadata/), ``img2dataset``
(url, caption, row lists), ``datacomp`` (sorted uids as ``u8,u8``) and ``webdataset`` (in
:mod:`workbench.export.wdsexport`). :func:`run_part` is the task an engine runs.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa

from workbench.errors import ConfigError, ShardError
from workbench.export.source import source_rows_table
from workbench.export.wdsexport import write_webdataset_part
from workbench.io.staging import _HashingFile, staged_task, write_parquet
from workbench.io.writer import _conform, _npy_header, shard_name

GATHER_ROWS = 65_536
META_ROW_GROUP = 131_072


# -- the parts -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Piece:
    """Rows of one source shard (local indices, sorted) that a part takes, in order."""

    shard: int
    rows: np.ndarray


@dataclass(frozen=True)
class Part:
    fmt: str
    number: int
    first: int  # position of the part's first row among all kept rows
    pieces: tuple[Piece, ...]

    @property
    def rows(self) -> int:
        return sum(len(p.rows) for p in self.pieces)

    @property
    def task_id(self) -> str:
        return f"{self.fmt}-{self.number:06d}"


def cut_parts(fmt: str, kept: list[np.ndarray], size: int) -> list[Part]:
    """The kept rows, in source order, cut into parts of `size` rows (the last one shorter)."""
    parts, pieces, have, number, first = [], [], 0, 0, 0
    for shard, local in enumerate(kept):
        start = 0
        while start < len(local):
            take = min(size - have, len(local) - start)
            pieces.append(Piece(shard, local[start:start + take]))
            have += take
            start += take
            if have == size:
                parts.append(Part(fmt, number, first, tuple(pieces)))
                number, first, pieces, have = number + 1, first + have, [], 0
    if have:
        parts.append(Part(fmt, number, first, tuple(pieces)))
    return parts


# -- the formats -----------------------------------------------------------------------------------
class _RowReader:
    """Rows of one stored array by local index (sorted). Where the rows are dense enough, the byte
    range that holds them is read with one read() into a reused buffer and gathered in memory:
    reading a page-cached file is several times faster than faulting in a memory map page by page."""

    SPARSE = 4  # read the span when it is at most this many times the bytes of the rows it holds

    def __init__(self, collection, shard: int, kind: str):
        self.collection, self.shard, self.kind = collection, shard, kind
        self.info = collection.shards[shard].image if kind == "image" else collection.shards[shard].text
        self.row_bytes = self.info.dim * self.info.dtype.itemsize
        self._file = None
        self._buf = np.empty(0, np.uint8)

    def take(self, rows: np.ndarray) -> np.ndarray:
        lo, hi = int(rows[0]), int(rows[-1]) + 1
        span = (hi - lo) * self.row_bytes
        if not self.info.mappable or span > self.SPARSE * len(rows) * self.row_bytes:
            return np.asarray(self.collection.embeddings(self.shard, self.kind)[rows])
        if self._file is None:
            self._file = open(self.info.path, "rb", buffering=0)
        if len(self._buf) < span:
            self._buf = np.empty(span, np.uint8)
        mv = memoryview(self._buf)[:span]
        self._file.seek(self.info.data_offset + lo * self.row_bytes)
        got = 0
        while got < span:
            k = self._file.readinto(mv[got:])
            if not k:
                raise ShardError(f"ends at byte {self.info.data_offset + lo * self.row_bytes + got}: the file is shorter "
                                 "than its header says (changed since it was opened?)", self.info.path)
            got += k
        block = self._buf[:span].view(self.info.dtype).reshape(hi - lo, self.info.dim)
        return block[rows - lo]

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def _write_npy(collection, part: Part, kind: str, path: Path, dim: int, dtype: np.dtype) -> dict:
    out = _HashingFile(path)
    try:
        out.write(_npy_header((part.rows, dim), dtype))
        for piece in part.pieces:
            reader = _RowReader(collection, piece.shard, kind)
            try:
                for a in range(0, len(piece.rows), GATHER_ROWS):
                    block = reader.take(piece.rows[a:a + GATHER_ROWS])
                    out.write(np.ascontiguousarray(block, dtype=dtype))
            finally:
                reader.close()
    except BaseException:
        out.abort()
        raise
    return out.close()


def write_laion_part(collection, part: Part, tmp: Path, options: dict) -> list[dict]:
    """One shard of the LAION layout: img_emb/text_emb rows byte-identical to the source, and the
    metadata rows with the source's columns (conformed to the first kept shard's schema)."""
    name = shard_name(part.number, options["padding"])
    files = []
    for kind, folder in (("image", "img_emb"), ("text", "text_emb")):
        if options["kinds"][kind]:
            rel = f"{folder}/{folder}_{name}.npy"
            (tmp / folder).mkdir(parents=True, exist_ok=True)
            info = _write_npy(collection, part, kind, tmp / rel, options["dim"], np.dtype(options["dtype"]))
            files.append({"path": rel, "rows": part.rows, **info})
    if options["schema"] is not None:
        rel = f"metadata/metadata_{name}.parquet"
        (tmp / "metadata").mkdir(parents=True, exist_ok=True)
        schema = options["schema"]
        tables = [_conform(source_rows_table(collection, p.shard, p.rows), schema, collection.shards[p.shard].metadata)
                  for p in part.pieces]
        table = pa.concat_tables(tables) if tables else schema.empty_table()
        write_parquet(table, tmp / rel, row_group_size=META_ROW_GROUP)
        files.append({"path": rel, "rows": part.rows})
    return files


def write_img2dataset_part(collection, part: Part, tmp: Path, options: dict) -> list[dict]:
    """An img2dataset input list: url, caption (the canonical columns) and the source row id."""
    canon = collection.canonical
    url, caption = canon.get("url"), canon.get("caption")
    cols = [c for c in (url, caption) if c is not None]
    urls, caps, rows = [], [], []
    for p in part.pieces:
        t = source_rows_table(collection, p.shard, p.rows, cols)
        urls.append(t.column(url).cast(pa.string()))
        caps.append(t.column(caption).cast(pa.string()) if caption else pa.nulls(t.num_rows, pa.string()))
        rows.append(pa.array(p.rows + int(collection.offsets[p.shard]), pa.int64()))
    table = pa.table({
        "url": pa.chunked_array(urls, pa.string()),
        "caption": pa.chunked_array(caps, pa.string()),
        "row": pa.chunked_array(rows, pa.int64()),
    })
    rel = f"img2dataset/{part.number:05d}.parquet"
    (tmp / "img2dataset").mkdir(parents=True, exist_ok=True)
    write_parquet(table, tmp / rel, row_group_size=META_ROW_GROUP)
    return [{"path": rel, "rows": part.rows}]


def uid_pairs(uids) -> np.ndarray:
    """128-bit hex uids -> DataComp's ``np.dtype("u8,u8")`` pairs (high, low 64 bits)."""
    out = np.empty(len(uids), np.dtype("u8,u8"))
    for i, u in enumerate(uids):
        if u is None or len(u) != 32:
            raise ConfigError(f"uid {u!r} is not 32 hex digits")
        out[i] = (int(u[:16], 16), int(u[16:], 16))
    return out


def write_datacomp_part(collection, part: Part, tmp: Path, options: dict) -> list[dict]:
    """DataComp's subset file: the kept rows' uids, sorted, as ``np.dtype("u8,u8")``."""
    col = collection.canonical.get("uid", "uid")
    chunks = []
    for p in part.pieces:
        t = source_rows_table(collection, p.shard, p.rows, [col])
        try:
            chunks.append(uid_pairs(t.column(col).to_pylist()))
        except ValueError as exc:
            raise ShardError(f"column {col!r}: {exc}", collection.shards[p.shard].metadata) from None
    uids = np.concatenate(chunks) if chunks else np.zeros(0, np.dtype("u8,u8"))
    uids = np.unique(uids)  # sorted; a subset is a set of uids (a row picked twice is listed once)
    rel = "datacomp/uids.npy"
    (tmp / "datacomp").mkdir(parents=True, exist_ok=True)
    with open(tmp / rel, "wb") as f:
        np.save(f, uids, allow_pickle=False)
    return [{"path": rel, "rows": len(uids)}]


WRITERS: dict[str, Callable] = {
    "laion": write_laion_part,
    "img2dataset": write_img2dataset_part,
    "datacomp": write_datacomp_part,
    "webdataset": write_webdataset_part,
}


# -- the task ------------------------------------------------------------------------------------
def run_part(task: tuple) -> dict:
    """Write one part into staging, publish its files under their final names, journal it."""
    collection, dst, part, options = task
    writer = WRITERS[part.fmt]
    return staged_task(dst, part.task_id, lambda tmp: writer(collection, part, tmp, options),
                       {"rows": part.rows}, f"part {part.number} ({part.fmt})")
