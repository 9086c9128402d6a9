"""Finding a row's image bytes: in img2dataset webdataset tars (by key), or in local files.

Tar members are indexed once per tar (headers only) and read by offset; nothing is extracted.
Remote URLs are never fetched here.
"""
from __future__ import annotations

import tarfile
from functools import lru_cache
from pathlib import Path

import polars as pl

from workbench.io.collection import Collection
from workbench.errors import ShardError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".jp2", ".pnm", ".pbm", ".pgm", ".ppm")


@lru_cache(maxsize=64)
def tar_index(path: str) -> dict[str, tuple[int, int]]:
    """member name -> (data offset, size) for every regular file of a tar."""
    index: dict[str, tuple[int, int]] = {}
    try:
        with tarfile.open(path, "r:") as tf:
            for m in tf:
                if m.isfile():
                    index[m.name] = (m.offset_data, m.size)
    except (tarfile.TarError, OSError) as exc:
        from workbench.io.npyfile import symlink_loop

        raise ShardError(symlink_loop(path) or f"unreadable tar ({exc})", path) from None
    return index


def tar_for_key(collection: Collection, key: str) -> Path | None:
    # img2dataset keys are the 5-digit shard id + the index inside it
    for d in collection.image_dirs:
        for width in (len(key) - 4, 5):
            if width > 0:
                tar = d / f"{key[:width]}.tar"
                if tar.exists():
                    return tar
    return None


def image_location(collection: Collection, shard: int, key: str | None, path: str | None):
    """Where a row's encoded image is: ``(extension, file, offset, size)`` for a member of a webdataset
    tar (found by key), ``(extension, file, None, None)`` for a local image file, or None. A relative
    ``image_path`` is looked up beside the collection first, then from the current directory."""
    if key and collection.images == "webdataset":
        s = collection.shards[shard]
        tar = s.tar if s.tar is not None else tar_for_key(collection, key)
        if tar is not None:
            index = tar_index(str(tar))
            for ext in IMAGE_EXTENSIONS:
                entry = index.get(key + ext)
                if entry is not None:
                    return ext[1:], str(tar), entry[0], entry[1]
    if path and Path(path).suffix.lower() in IMAGE_EXTENSIONS:
        p = Path(path)
        for candidate in ([p] if p.is_absolute() else [collection.path / p, p]):  # relative: to the collection first
            if candidate.is_file():
                return p.suffix.lower()[1:], str(candidate), None, None
    return None


def image_bytes(collection: Collection, row: int) -> bytes | None:
    """The encoded image of a row, or None when the collection holds no image for it."""
    shard = int(collection.shard_of([row])[0])
    meta = collection.shard_metadata(shard).filter(pl.col("row") == row)
    cols = set(collection.shard_metadata(shard).collect_schema().names())
    want = [c for c in ("key", "image_path") if c in cols]
    if not want:
        return None
    rec = meta.select(want).collect().row(0, named=True)
    key = rec.get("key") or (Path(rec["image_path"]).stem if rec.get("image_path") else None)
    where = image_location(collection, shard, key, rec.get("image_path"))
    if where is None:
        return None
    _, file, offset, size = where
    if offset is None:
        return Path(file).read_bytes()
    with open(file, "rb") as f:
        f.seek(offset)
        return f.read(size)
