"""Reading .npy arrays (alone or inside .npz archives) without ever unpickling.

Only the header is parsed at open time (numpy parses it with ``ast.literal_eval``); the data is
memory-mapped. Object dtypes, which would need pickle, are refused before any data is touched.
"""
from __future__ import annotations

import errno
import os
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workbench.errors import ShardError

FLOAT_DTYPES = (np.dtype("float16"), np.dtype("float32"), np.dtype("float64"))
# what a damaged zip member raises while it is inflated: a bad deflate stream, a CRC mismatch, a short stream
_INFLATE_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError)
_LOCAL_HEADER = struct.Struct("<IHHHHHIIIHH")  # zip local file header, 30 bytes


@dataclass(frozen=True)
class NpyArray:
    """A 2-D float array stored in a .npy file or a stored/deflated member of a .npz archive."""

    path: Path
    member: str | None  # npz member name (without .npy), None for a plain .npy file
    shape: tuple[int, int]
    dtype: np.dtype
    data_offset: int  # byte offset of the data in `path` (only meaningful when `mappable`)
    mappable: bool  # False for compressed npz members: they are decompressed on access

    @property
    def rows(self) -> int:
        return self.shape[0]

    @property
    def dim(self) -> int:
        return self.shape[1]

    @property
    def where(self) -> str:
        return f"{self.path}[{self.member}]" if self.member else str(self.path)

    def open(self) -> np.ndarray:
        """The array, memory-mapped read-only where possible."""
        if self.rows == 0:
            return np.empty(self.shape, dtype=self.dtype)
        if self.mappable:
            try:
                return np.memmap(self.path, dtype=self.dtype, mode="r", offset=self.data_offset, shape=self.shape)
            except (OSError, ValueError) as exc:
                why = getattr(exc, "strerror", None) or exc
                raise ShardError(f"cannot read the data ({why})", self.where) from None
        try:
            with zipfile.ZipFile(self.path) as zf, zf.open(self.member + ".npy") as f:
                arr = np.lib.format.read_array(f, allow_pickle=False)
        except KeyError:
            raise ShardError(f"archive has no array '{self.member}' any more (changed since it was opened?)",
                             self.path) from None
        except (*_INFLATE_ERRORS, ValueError) as exc:
            raise ShardError(f"damaged compressed array: cannot inflate it ({exc})", self.where) from None
        if arr.shape != self.shape:
            raise ShardError(f"array has shape {arr.shape}, header said {self.shape}", self.where)
        return arr


def symlink_loop(path: str | Path) -> str | None:
    """``"a symlink loop (...)"`` when `path` is a symbolic link that never ends (it leads back to
    itself, directly or through others); else None. ``Path.exists()`` says False for such a path."""
    try:
        os.stat(path)
        return None
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            return None
    try:
        target = os.readlink(path)
    except OSError:
        target = "?"
    return f"a symlink loop ({Path(path).name} -> {target} never reaches a file: it leads back to itself)"


def _parse_header(f, where: str) -> tuple[tuple[int, ...], np.dtype, bool]:
    try:
        version = np.lib.format.read_magic(f)
    except ValueError:
        raise ShardError("not a .npy file (bad magic bytes)", where) from None
    try:
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:  # pragma: no cover - numpy only defines 1.0-3.0
            raise ShardError(f"unsupported .npy version {version}", where)
    except ShardError:
        raise
    except Exception as exc:  # noqa: BLE001 - any header parse failure is a broken file
        raise ShardError(f"unreadable .npy header ({exc})", where) from None
    if dtype.hasobject:
        raise ShardError(
            f"holds dtype {dtype}, which would need pickle to load; refused (the workbench never unpickles)", where
        )
    return shape, dtype, fortran


def _check(shape, dtype, fortran, where: str, data_bytes: int | None) -> tuple[int, int]:
    if len(shape) != 2:
        raise ShardError(f"expected a 2-D array (rows, dim), found shape {shape}", where)
    if dtype.base not in FLOAT_DTYPES or dtype.fields is not None or dtype.subdtype is not None:
        hint = ""
        if dtype.kind == "V" and dtype.itemsize == 2 and dtype.fields is None:
            hint = " (raw 2-byte values, as numpy saves bfloat16: convert them to float16 or float32 first)"
        elif dtype.kind == "f" and dtype.byteorder == ">":
            hint = " (big-endian: save it in little-endian byte order)"
        raise ShardError(f"holds dtype {dtype}: embeddings must be floats (float16 or float32, as LAION and "
                         f"DataComp store them, or float64){hint}", where)
    if fortran and shape[0] > 1 and shape[1] > 1:
        raise ShardError("Fortran-ordered arrays are not supported; save with C order", where)
    rows, dim = int(shape[0]), int(shape[1])
    if data_bytes is not None:
        need = rows * dim * dtype.itemsize
        if data_bytes < need:
            row_bytes = max(dim * dtype.itemsize, 1)
            complete = data_bytes // row_bytes
            raise ShardError(
                f"truncated: header says {rows} rows x {dim} {dtype} ({need} data bytes) but the file holds "
                f"{data_bytes}; data stops inside row {complete}",
                where,
                row=complete,
            )
        if data_bytes > need:
            raise ShardError(f"{data_bytes - need} unexpected bytes after the {rows} x {dim} array", where)
    return rows, dim


def read_npy(path: str | Path) -> NpyArray:
    """Parse and check the header of a .npy file; the data is not read."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            shape, dtype, fortran = _parse_header(f, str(path))
            offset = f.tell()
    except OSError as exc:
        raise ShardError(symlink_loop(path) or f"cannot read ({exc.strerror})", path) from None
    rows, dim = _check(shape, dtype, fortran, str(path), size - offset)
    return NpyArray(path, None, (rows, dim), dtype, offset, True)


def npz_members(path: str | Path) -> list[str]:
    """Names of the arrays in an .npz archive (without the .npy suffix)."""
    try:
        with zipfile.ZipFile(path) as zf:
            return [n[:-4] for n in zf.namelist() if n.endswith(".npy")]
    except (zipfile.BadZipFile, OSError) as exc:
        raise ShardError(symlink_loop(path) or f"not a readable .npz archive ({exc})", path) from None


def read_npz_member(path: str | Path, member: str) -> NpyArray:
    """Parse and check the header of one array inside an .npz archive; the data is not read."""
    path = Path(path)
    where = f"{path}[{member}]"
    try:
        with zipfile.ZipFile(path) as zf:
            try:
                info = zf.getinfo(member + ".npy")
            except KeyError:
                raise ShardError(f"archive has no array '{member}' (it has {npz_members(path)})", path) from None
            with zf.open(info) as f:
                shape, dtype, fortran = _parse_header(f, where)
                header_len = f.tell()
            stored = info.compress_type == zipfile.ZIP_STORED
            data_offset = 0
            if stored:
                with open(path, "rb") as raw:
                    raw.seek(info.header_offset)
                    fields = _LOCAL_HEADER.unpack(raw.read(_LOCAL_HEADER.size))
                name_len, extra_len = fields[9], fields[10]
                data_offset = info.header_offset + _LOCAL_HEADER.size + name_len + extra_len + header_len
    except (*_INFLATE_ERRORS, struct.error) as exc:
        raise ShardError(symlink_loop(path) or f"not a readable .npz archive ({exc})", where) from None
    rows, dim = _check(shape, dtype, fortran, where, info.file_size - header_len)
    return NpyArray(path, member, (rows, dim), dtype, data_offset, stored)
