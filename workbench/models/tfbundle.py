"""Read a TensorFlow checkpoint "tensor bundle" without TensorFlow.

A SavedModel keeps its variables in ``variables/variables.index`` (a LevelDB-format SSTable) plus
one or more data shards ``variables/variables.data-NNNNN-of-MMMMM``. This module parses both by
hand, so the NSFW detector heads can run on numpy alone:

* the SSTable: a 48-byte footer (metaindex and index ``BlockHandle`` varints, padding, magic
  ``0xdb4775248b80fb57``); each block is prefix-compressed entries ``(shared, non_shared,
  value_len, key_delta, value)`` followed by ``uint32`` restart offsets and their count, then a
  5-byte trailer (compression type byte, masked crc32c of block+type). Type 0 (none) and 1
  (snappy; a small pure-python decoder is included) are handled; anything else raises.
* values: key ``""`` is a ``BundleHeaderProto`` (num_shards, endianness); every other key is a
  tensor name whose value is a ``BundleEntryProto`` (1 dtype, 2 shape, 3 shard_id, 4 offset,
  5 size, 6 crc32c (masked), 7 slices). The protobuf wire format is decoded by hand.
* data: ``size`` bytes at ``offset`` of the shard, little-endian raw values for numeric dtypes;
  string tensors are ``varint64`` lengths, a 4-byte checksum of the lengths, then the bytes.

Block and tensor checksums (crc32c, pure python) are verified by default; the largest tensor in
the shipped heads is ~0.9 MB, which takes a fraction of a second. Pass ``verify=False`` to skip.

Nothing is unpickled and nothing is executed; the bundle can be read straight out of a ``.zip``
(:func:`read_bundle_from_zip`) without extracting to disk.
"""
from __future__ import annotations

import re
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workbench.errors import BundleError  # noqa: F401  (re-exported)


TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_LEN = 48
BLOCK_TRAILER_LEN = 5

# tensorflow/core/framework/types.proto
DTYPES = {
    1: np.dtype("<f4"), 2: np.dtype("<f8"), 3: np.dtype("<i4"), 4: np.dtype("u1"),
    5: np.dtype("<i2"), 6: np.dtype("i1"), 9: np.dtype("<i8"), 10: np.dtype("?"),
    17: np.dtype("<u2"), 19: np.dtype("<f2"), 22: np.dtype("<u4"), 23: np.dtype("<u8"),
}
DT_STRING = 7
DT_BFLOAT16 = 14


# ---------------------------------------------------------------- crc32c (Castagnoli)

def _make_crc_table() -> list[int]:
    poly = 0x82F63B78
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _make_crc_table()


def crc32c(data: bytes, crc: int = 0) -> int:
    """Plain crc32c (pure python; ~1 s per 2-3 MB)."""
    table = _CRC_TABLE
    c = crc ^ 0xFFFFFFFF
    for b in data:
        c = table[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def mask_crc(crc: int) -> int:
    """LevelDB/TensorFlow masked crc."""
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


# ---------------------------------------------------------------- varints and protobuf

def _varint(buf: bytes, pos: int, where: str) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(buf):
            raise BundleError(f"truncated varint in {where}")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise BundleError(f"varint too long in {where}")


def parse_proto(buf: bytes, where: str = "protobuf") -> list[tuple[int, int, object]]:
    """Decode one protobuf message into ``(field_number, wire_type, value)`` triples.

    Varints come back as int, fixed32/fixed64 as int, length-delimited fields as bytes.
    """
    out = []
    pos = 0
    n = len(buf)
    while pos < n:
        tag, pos = _varint(buf, pos, where)
        field, wt = tag >> 3, tag & 7
        if wt == 0:
            val, pos = _varint(buf, pos, where)
        elif wt == 1:
            if pos + 8 > n:
                raise BundleError(f"truncated fixed64 in {where}")
            val = struct.unpack_from("<Q", buf, pos)[0]
            pos += 8
        elif wt == 2:
            ln, pos = _varint(buf, pos, where)
            if pos + ln > n:
                raise BundleError(f"truncated length-delimited field {field} in {where}")
            val = bytes(buf[pos:pos + ln])
            pos += ln
        elif wt == 5:
            if pos + 4 > n:
                raise BundleError(f"truncated fixed32 in {where}")
            val = struct.unpack_from("<I", buf, pos)[0]
            pos += 4
        else:
            raise BundleError(f"unsupported wire type {wt} (field {field}) in {where}")
        out.append((field, wt, val))
    return out


def _signed64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


@dataclass(frozen=True)
class BundleEntry:
    name: str
    dtype: int
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c: int | None  # masked, as stored
    sliced: bool


def parse_entry(name: str, buf: bytes) -> BundleEntry:
    dtype = 0
    shape: list[int] = []
    shard_id = offset = size = 0
    crc = None
    sliced = False
    for field, _wt, val in parse_proto(buf, f"BundleEntryProto of {name!r}"):
        if field == 1:
            dtype = val
        elif field == 2:  # TensorShapeProto: 2 = repeated Dim{1 size, 2 name}, 3 = unknown_rank
            for f2, _w2, v2 in parse_proto(val, f"TensorShapeProto of {name!r}"):
                if f2 == 2:
                    dim = 0
                    for f3, _w3, v3 in parse_proto(v2, f"Dim of {name!r}"):
                        if f3 == 1:
                            dim = _signed64(v3)
                    shape.append(dim)
                elif f2 == 3 and v2:
                    raise BundleError(f"tensor {name!r} has unknown rank")
        elif field == 3:
            shard_id = val
        elif field == 4:
            offset = val
        elif field == 5:
            size = val
        elif field == 6:
            crc = val
        elif field == 7:
            sliced = True
    return BundleEntry(name, dtype, tuple(shape), shard_id, offset, size, crc, sliced)


# ---------------------------------------------------------------- snappy (raw block format)

def snappy_decompress(buf: bytes) -> bytes:
    """Decode a raw snappy block (the format LevelDB tables use for compressed blocks)."""
    length, pos = _varint(buf, 0, "snappy header")
    out = bytearray()
    n = len(buf)
    while pos < n:
        tag = buf[pos]
        pos += 1
        kind = tag & 3
        if kind == 0:  # literal
            ln = tag >> 2
            if ln >= 60:
                nb = ln - 59
                ln = int.from_bytes(buf[pos:pos + nb], "little")
                pos += nb
            ln += 1
            if pos + ln > n:
                raise BundleError("truncated snappy literal")
            out += buf[pos:pos + ln]
            pos += ln
            continue
        if kind == 1:
            ln = ((tag >> 2) & 7) + 4
            off = ((tag >> 5) << 8) | buf[pos]
            pos += 1
        elif kind == 2:
            ln = (tag >> 2) + 1
            off = int.from_bytes(buf[pos:pos + 2], "little")
            pos += 2
        else:
            ln = (tag >> 2) + 1
            off = int.from_bytes(buf[pos:pos + 4], "little")
            pos += 4
        if off == 0 or off > len(out):
            raise BundleError("bad snappy copy offset")
        for _ in range(ln):  # copies may overlap
            out.append(out[-off])
    if len(out) != length:
        raise BundleError(f"snappy length mismatch: header {length}, got {len(out)}")
    return bytes(out)


# ---------------------------------------------------------------- SSTable

def _block_handle(buf: bytes, pos: int, where: str) -> tuple[int, int, int]:
    off, pos = _varint(buf, pos, where)
    size, pos = _varint(buf, pos, where)
    return off, size, pos


def _read_block(table: bytes, off: int, size: int, verify: bool, where: str) -> bytes:
    end = off + size + BLOCK_TRAILER_LEN
    if end > len(table):
        raise BundleError(f"block at {off}+{size} runs past the end of {where} ({len(table)} bytes)")
    data = table[off:off + size]
    ctype = table[off + size]
    if verify:
        stored = struct.unpack_from("<I", table, off + size + 1)[0]
        if mask_crc(crc32c(bytes([ctype]), crc32c(data))) != stored:
            raise BundleError(f"block checksum mismatch at offset {off} of {where}")
    if ctype == 0:
        return data
    if ctype == 1:  # snappy
        return snappy_decompress(data)
    raise BundleError(f"block at {off} of {where} uses unsupported compression type {ctype}")


def _block_entries(block: bytes, where: str):
    if len(block) < 4:
        raise BundleError(f"block too small in {where}")
    num_restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    limit = len(block) - 4 - 4 * num_restarts
    if limit < 0:
        raise BundleError(f"bad restart count in {where}")
    pos = 0
    key = b""
    while pos < limit:
        shared, pos = _varint(block, pos, where)
        non_shared, pos = _varint(block, pos, where)
        vlen, pos = _varint(block, pos, where)
        if shared > len(key) or pos + non_shared + vlen > limit:
            raise BundleError(f"corrupt block entry in {where}")
        key = key[:shared] + block[pos:pos + non_shared]
        pos += non_shared
        yield key, block[pos:pos + vlen]
        pos += vlen


def read_table(table: bytes, verify: bool = True, where: str = "index") -> dict[bytes, bytes]:
    """Every key -> value of a LevelDB-format SSTable given as bytes."""
    if len(table) < FOOTER_LEN:
        raise BundleError(f"{where} is too short ({len(table)} bytes) to be an SSTable")
    footer = table[-FOOTER_LEN:]
    magic = struct.unpack_from("<Q", footer, FOOTER_LEN - 8)[0]
    if magic != TABLE_MAGIC:
        raise BundleError(f"{where} has no SSTable magic (truncated or not a tensor bundle index)")
    _moff, _msize, pos = _block_handle(footer, 0, where)
    ioff, isize, _ = _block_handle(footer, pos, where)
    index = _read_block(table, ioff, isize, verify, where)
    out: dict[bytes, bytes] = {}
    for _k, handle in _block_entries(index, where):
        doff, dsize, _ = _block_handle(handle, 0, where)
        for k, v in _block_entries(_read_block(table, doff, dsize, verify, where), where):
            out[k] = v
    return out


# ---------------------------------------------------------------- bundle

def _decode_strings(raw: bytes, count: int, name: str) -> tuple[np.ndarray, int]:
    """Values of a string tensor, and its crc32c as TensorFlow computes it (unmasked).

    TF checksums the lengths as little-endian uint32 (uint64 if a length exceeds 4 GiB; not the
    varints), then the 4 stored bytes of the (masked) length checksum, then the string bytes.
    """
    pos = 0
    lens = []
    for _ in range(count):
        ln, pos = _varint(raw, pos, f"string tensor {name!r}")
        lens.append(ln)
    if pos + 4 > len(raw):
        raise BundleError(f"string tensor {name!r} is truncated")
    crc = crc32c(b"".join(struct.pack("<I" if ln <= 0xFFFFFFFF else "<Q", ln) for ln in lens))
    if struct.unpack_from("<I", raw, pos)[0] != mask_crc(crc):
        raise BundleError(f"string tensor {name!r}: length checksum mismatch")
    crc = crc32c(raw[pos:pos + 4], crc)
    pos += 4
    vals = []
    for ln in lens:
        if pos + ln > len(raw):
            raise BundleError(f"string tensor {name!r} is truncated")
        vals.append(raw[pos:pos + ln])
        crc = crc32c(raw[pos:pos + ln], crc)
        pos += ln
    return np.array(vals, dtype=object), crc


class TensorBundle:
    """The entries of one bundle; tensors are decoded on demand from in-memory shards."""

    def __init__(self, index: bytes, shards: dict[int, bytes], source: str = "bundle",
                 verify: bool = True):
        self.source = source
        self.verify = verify
        table = read_table(index, verify=verify, where=f"{source} (variables.index)")
        self.num_shards = 1
        self.entries: dict[str, BundleEntry] = {}
        for k, v in table.items():
            if k == b"":
                for f, _w, val in parse_proto(v, "BundleHeaderProto"):
                    if f == 1:
                        self.num_shards = val
                    elif f == 2 and val != 0:
                        raise BundleError(f"{source}: big-endian bundles are not supported")
                continue
            name = k.decode("utf-8", "replace")
            self.entries[name] = parse_entry(name, v)
        self.shards = shards

    def names(self) -> list[str]:
        return sorted(self.entries)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {n: e.shape for n, e in sorted(self.entries.items())}

    def get(self, name: str) -> np.ndarray:
        try:
            e = self.entries[name]
        except KeyError:
            raise BundleError(f"{self.source}: no tensor named {name!r}") from None
        if e.sliced:
            raise BundleError(f"{self.source}: tensor {name!r} is stored in slices (unsupported)")
        shard = self.shards.get(e.shard_id)
        if shard is None:
            raise BundleError(f"{self.source}: data shard {e.shard_id} for {name!r} is missing")
        if e.offset + e.size > len(shard):
            raise BundleError(f"{self.source}: tensor {name!r} runs past the end of data shard "
                              f"{e.shard_id} (truncated?)")
        raw = shard[e.offset:e.offset + e.size]
        count = int(np.prod(e.shape, dtype=np.int64)) if e.shape else 1
        if e.dtype == DT_STRING:
            vals, crc = _decode_strings(raw, count, name)
            if self.verify and e.crc32c is not None and mask_crc(crc) != e.crc32c:
                raise BundleError(f"{self.source}: crc32c mismatch for tensor {name!r}")
            return vals.reshape(e.shape)
        if self.verify and e.crc32c is not None and mask_crc(crc32c(raw)) != e.crc32c:
            raise BundleError(f"{self.source}: crc32c mismatch for tensor {name!r}")
        if e.dtype == DT_BFLOAT16:
            u = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            return u.view(np.float32).reshape(e.shape)
        dt = DTYPES.get(e.dtype)
        if dt is None:
            raise BundleError(f"{self.source}: tensor {name!r} has unsupported dtype enum {e.dtype}")
        if count * dt.itemsize != len(raw):
            raise BundleError(f"{self.source}: tensor {name!r} has {len(raw)} bytes, "
                              f"expected {count * dt.itemsize} for shape {e.shape}")
        return np.frombuffer(raw, dtype=dt).reshape(e.shape).copy()

    def tensors(self) -> dict[str, np.ndarray]:
        return {n: self.get(n) for n in self.names()}


_SHARD_RE = re.compile(r"variables\.data-(\d+)-of-(\d+)$")


def read_bundle_from_zip(path: str | Path, verify: bool = True) -> TensorBundle:
    """Open the ``variables/`` bundle inside a zipped SavedModel, reading members in memory."""
    path = Path(path)
    try:
        zf = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise BundleError("file not found", path) from None
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise BundleError(f"not a readable zip archive ({exc})", path) from None
    with zf:
        try:
            names = zf.namelist()
            idx = [n for n in names if n.endswith("variables/variables.index")]
            if len(idx) != 1:
                raise BundleError(f"expected one variables/variables.index, found {len(idx)}", path)
            prefix = idx[0][: -len("variables.index")]
            index = zf.read(idx[0])
            shards: dict[int, bytes] = {}
            for n in names:
                if n.startswith(prefix):
                    m = _SHARD_RE.search(n)
                    if m:
                        shards[int(m.group(1))] = zf.read(n)
        except BundleError:
            raise
        except (zipfile.BadZipFile, OSError, EOFError, zlib_error()) as exc:
            raise BundleError(f"corrupt zip member ({exc})", path) from None
    try:
        return TensorBundle(index, shards, source=str(path), verify=verify)
    except BundleError as exc:
        raise BundleError(exc.reason, path) from None


def read_bundle_dir(variables_dir: str | Path, verify: bool = True) -> TensorBundle:
    """Open an unzipped bundle: a directory holding variables.index and variables.data-*."""
    d = Path(variables_dir)
    try:
        index = (d / "variables.index").read_bytes()
        shards = {int(_SHARD_RE.search(p.name).group(1)): p.read_bytes()
                  for p in d.iterdir() if _SHARD_RE.search(p.name)}
    except OSError as exc:
        raise BundleError(f"cannot read tensor bundle ({exc})", d) from None
    try:
        return TensorBundle(index, shards, source=str(d), verify=verify)
    except BundleError as exc:
        raise BundleError(exc.reason, d) from None


def zlib_error():
    import zlib
    return zlib.error


def read_zip_member(path: str | Path, suffix: str) -> bytes:
    """The bytes of the single member of ``path`` whose name ends with ``suffix``."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            hits = [n for n in zf.namelist() if n.endswith(suffix)]
            if len(hits) != 1:
                raise BundleError(f"expected one member ending in {suffix!r}, found {len(hits)}", path)
            return zf.read(hits[0])
    except FileNotFoundError:
        raise BundleError("file not found", path) from None
    except (zipfile.BadZipFile, OSError, EOFError, zlib_error()) as exc:
        raise BundleError(f"not a readable zip archive ({exc})", path) from None
