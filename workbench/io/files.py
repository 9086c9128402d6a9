"""Small file operations every stage needs, written once.

    write_atomic(path, lambda tmp: df.write_parquet(tmp))   # whole or not at all
    write_parquet_atomic(df, path)
    write_text_atomic(path, text)
    sha256_file(path)

Every module that writes a file whole-or-not-at-all goes through :func:`write_atomic` (the shard
writer and the staged-write journal in ``io/writer.py`` / ``io/staging.py`` keep their own protocol:
staged names, fsyncs and a manifest written last).
"""
from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path
from typing import Callable

from workbench.errors import WriteError


def write_atomic(path: str | Path, write: Callable[[Path], object], durable: bool = False) -> Path:
    """Write `path` whole or not at all: `write(tmp)` fills a temporary file beside it (same folder,
    so the final rename is atomic), which then replaces `path`. On any error the temporary file is
    removed and `path` is left as it was (absent, or its old content). durable: fsync the file and
    its folder, so the new content survives a power cut (a reader in another process sees it either
    way). The temporary name, ``.<name>.<pid>-<random>.partial``, is unique per call, so two writers
    (processes or threads) of the same path never share one; the last rename wins, whole. A missing
    parent folder is created (a file in the way is a :class:`~workbench.errors.WriteError`)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise WriteError(f"cannot create the folder {path.parent}: a file is in the way", path) from None
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.partial")
    try:
        write(tmp)
        if not tmp.exists():
            raise FileNotFoundError(f"the writer did not create {tmp}")
        if durable:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if durable:
            fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_parquet_atomic(frame, path: str | Path) -> Path:
    """A polars DataFrame written to `path` as parquet, whole or not at all."""
    return write_atomic(path, frame.write_parquet)


def write_text_atomic(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """`text` written to `path` (in `encoding`), whole or not at all."""
    return write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding=encoding))


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    """The hex sha256 of a file's bytes, read in `chunk`-byte blocks (the digest does not depend on it)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def read_parquet_named(path: str | Path, what: str):
    """A parquet the user names (candidates, labels, a rows file) read whole as a polars DataFrame.

    Contract: a missing, unreadable or damaged file raises :class:`workbench.errors.WorkbenchError`
    ``cannot read the <what> (<first line of the reader's error>)`` naming `path`, never a traceback."""
    import polars as pl

    from workbench.errors import WorkbenchError

    try:
        return pl.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - polars' errors for a missing or damaged file
        raise WorkbenchError(f"cannot read the {what} ({str(exc).splitlines()[0]})", str(path)) from None
