"""The webdataset output format: the kept rows' images resharded into img2dataset-style tars.

Each tar ``webdataset/<part:05d>.tar`` holds, per sample, ``<key>.<ext>`` (the source image bytes,
unchanged), ``<key>.txt`` (the caption) and ``<key>.json`` (the row's metadata). Keys follow
img2dataset: the 5-digit part number then the sample's index in the part. The source's own key
and global row id are kept in the json as ``source_key`` and ``source_row``. Beside each tar, a
parquet holds the same rows with ``status``: ``success``, or ``no_image`` for a kept row whose
image the source does not hold (such rows are counted, never silently dropped). The folder is
itself a collection the workbench opens.

Images come from the source's webdataset tars (by key) or from local files (``image_path``).
Tar entries carry fixed owner, mode and time, so the same rows give byte-identical tars.
"""
from __future__ import annotations

import json
import math
from pathlib import Path


import pyarrow as pa

from workbench.export.source import source_rows_table
from workbench.io.images import image_location
from workbench.io.staging import write_parquet

NO_IMAGE = "no_image"
_REPLACED = ("key", "status", "error_message", "source_key", "source_row")


class _Images:
    """Finds a row's encoded image: in the source's tars by key, else in a local file."""

    def __init__(self, collection):
        self.c = collection
        self._files: dict[str, object] = {}

    def find(self, shard: int, key: str | None, path: str | None) -> tuple[str, bytes] | None:
        where = image_location(self.c, shard, key, path)
        if where is None:
            return None
        ext, file, offset, size = where
        return ext, (Path(file).read_bytes() if offset is None else self._read(file, offset, size))

    def _read(self, tar: str, offset: int, size: int) -> bytes:
        f = self._files.get(tar)
        if f is None:
            f = self._files[tar] = open(tar, "rb")
        f.seek(offset)
        return f.read(size)

    def close(self) -> None:
        for f in self._files.values():
            f.close()


def _jsonable(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return str(v)


def write_webdataset_part(collection, part, tmp: Path, options: dict) -> list[dict]:
    from webdataset import TarWriter


    canon = collection.canonical
    key_col, cap_col, path_col = canon.get("key"), canon.get("caption"), canon.get("image_path")
    width = max(4, len(str(options["samples_per_tar"] - 1)))
    folder = tmp / "webdataset"
    folder.mkdir(parents=True, exist_ok=True)
    rel_tar = f"webdataset/{part.number:05d}.tar"
    rel_pq = f"webdataset/{part.number:05d}.parquet"
    images = _Images(collection)
    tables, j, missing, image_bytes = [], 0, 0, 0
    try:
        # the writer is closed (into the still open file) even when a part stops on an error: else its stream
        # would flush into a closed file when collected ("Exception ignored ... write to closed file")
        with open(tmp / rel_tar, "wb") as f, TarWriter(f, user="", group="", mode=0o444, mtime=0, encoder=False) as tw:
            for piece in part.pieces:
                t = source_rows_table(collection, piece.shard, piece.rows)
                rows = piece.rows + int(collection.offsets[piece.shard])
                keys_out, status = [], []
                src_keys = t.column(key_col).to_pylist() if key_col else [None] * t.num_rows
                for rec, row, src_key in zip(t.to_pylist(), rows.tolist(), src_keys):
                    key = f"{part.number:05d}{j:0{width}d}"
                    j += 1
                    keys_out.append(key)
                    found = images.find(piece.shard, None if src_key is None else str(src_key),
                                        rec.get(path_col) if path_col else None)
                    if found is None:
                        status.append(NO_IMAGE)
                        missing += 1
                        continue
                    status.append("success")
                    ext, data = found
                    image_bytes += len(data)
                    meta = {k: _jsonable(v) for k, v in rec.items() if k not in _REPLACED}
                    meta.update(key=key, status="success", source_key=src_key, source_row=row)
                    caption = rec.get(cap_col) if cap_col else None
                    tw.write({"__key__": key, ext: data, "txt": ("" if caption is None else str(caption)).encode(),
                              "json": json.dumps(meta, ensure_ascii=False, sort_keys=True).encode()})
                keep = [c for c in t.column_names if c not in _REPLACED]
                tables.append(t.select(keep).append_column("key", pa.array(keys_out, pa.string()))
                              .append_column("status", pa.array(status, pa.string()))
                              .append_column("source_key", pa.array([None if k is None else str(k) for k in src_keys], pa.string()))
                              .append_column("source_row", pa.array(rows, pa.int64())))
    finally:
        images.close()
    if tables:
        from workbench.io.writer import _conform

        schema = tables[0].schema
        table = pa.concat_tables([_conform(x, schema, rel_pq) for x in tables])
    else:
        table = pa.table({"key": pa.array([], pa.string()), "status": pa.array([], pa.string())})
    write_parquet(table, tmp / rel_pq)
    stats = {"samples": int(part.rows - missing), "no_image": int(missing), "image_bytes": int(image_bytes)}
    return [{"path": rel_tar, "samples": stats["samples"], "stats": stats},
            {"path": rel_pq, "rows": int(part.rows)}]



