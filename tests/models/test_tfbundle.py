"""The hand-written TensorFlow tensor-bundle reader, on the real shipped NSFW detector zips."""
from __future__ import annotations

import zipfile

import numpy as np
import pytest

from conftest import SHARED, needs_shared
from workbench.errors import WorkbenchError
from workbench.models.tfbundle import (BundleError, TensorBundle, crc32c, mask_crc, parse_proto,
                                read_bundle_from_zip, snappy_decompress)

NSFW = SHARED / "data" / "heads" / "laion_nsfw_detector"
L14 = NSFW / "clip_autokeras_binary_nsfw.zip"
B32 = NSFW / "clip_autokeras_nsfw_b32.zip"
needs_zips = needs_shared("heads/laion_nsfw_detector")
V = "layer_with_weights-{}/{}/.ATTRIBUTES/VARIABLE_VALUE"


def test_crc32c_known_vector():
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0


@needs_zips
@pytest.mark.parametrize("path,dims", [(L14, [768, 64, 512, 256, 1]), (B32, [512, 32, 32, 1])])
def test_bundle_lists_expected_variables(path, dims):
    b = read_bundle_from_zip(path)  # verify=True: block and tensor crc32c checked
    shapes = b.shapes()
    assert shapes[V.format(1, "mean")] == (dims[0],)
    assert shapes[V.format(1, "variance")] == (dims[0],)
    for i, (a, c) in enumerate(zip(dims, dims[1:])):
        assert shapes[V.format(i + 2, "kernel")] == (a, c)
        assert shapes[V.format(i + 2, "bias")] == (c,)
    assert V.format(len(dims) + 1, "kernel") not in shapes
    t = b.tensors()
    assert t[V.format(2, "kernel")].dtype == np.float32
    assert np.all(t[V.format(1, "variance")] > 0)
    assert int(t[V.format(1, "count")]) > 100_000
    # the categorical columns' adapt accumulators are empty string tables
    keys = [n for n in shapes if n.endswith("token_counts/.ATTRIBUTES/table-keys")]
    assert keys and all(shapes[k] == (0,) for k in keys)
    assert t["_CHECKPOINTABLE_OBJECT_GRAPH"].dtype == object


@needs_zips
def test_bundle_categorical_columns_match_reference():
    cols = lambda p: sorted(int(n.split("/")[2]) for n in read_bundle_from_zip(p).names()
                            if n.endswith("table-keys"))
    assert cols(L14) == [180, 316, 413, 440, 644]
    assert cols(B32) == [92, 133, 312]


def _members(path):
    with zipfile.ZipFile(path) as zf:
        idx = next(n for n in zf.namelist() if n.endswith("variables.index"))
        data = next(n for n in zf.namelist() if "variables.data-" in n)
        return zf.read(idx), zf.read(data)


@needs_zips
def test_tensor_crc_mismatch_detected():
    index, data = _members(B32)
    good = TensorBundle(index, {0: data}, source="b32")
    e = good.entries[V.format(2, "kernel")]
    bad = bytearray(data)
    bad[e.offset + 7] ^= 0x40
    b = TensorBundle(index, {0: bytes(bad)}, source="b32")
    with pytest.raises(BundleError, match="crc32c mismatch"):
        b.get(V.format(2, "kernel"))
    assert TensorBundle(index, {0: bytes(bad)}, verify=False).get(V.format(2, "kernel")).shape == (512, 32)


@needs_zips
def test_index_corruption_detected():
    index, data = _members(B32)
    with pytest.raises(BundleError, match="magic"):
        TensorBundle(index[:-3], {0: data})
    bad = bytearray(index)
    bad[40] ^= 0x01
    with pytest.raises(BundleError, match="checksum"):
        TensorBundle(bytes(bad), {0: data})


@needs_zips
def test_truncated_shard_detected():
    index, data = _members(B32)
    b = TensorBundle(index, {0: data[: len(data) // 2]}, source="b32")
    with pytest.raises(BundleError, match="past the end"):
        b.tensors()


@needs_zips
def test_truncated_zip_names_file(tmp_path):
    bad = tmp_path / "cut.zip"
    bad.write_bytes(B32.read_bytes()[:50_000])
    with pytest.raises(WorkbenchError) as ei:
        read_bundle_from_zip(bad)
    assert str(bad) in str(ei.value)
    with pytest.raises(WorkbenchError, match="not found"):
        read_bundle_from_zip(tmp_path / "absent.zip")


def test_snappy_decoder():
    # "abc" literal then a 6-byte overlapping copy at offset 3
    assert snappy_decompress(b"\x09\x08abc\x09\x03") == b"abcabcabc"
    with pytest.raises(BundleError):
        snappy_decompress(b"\x0a\x08abc\x09\x03")


def test_parse_proto_varint_and_bytes():
    assert parse_proto(b"\x08\x96\x01\x12\x02hi") == [(1, 0, 150), (2, 2, b"hi")]
    with pytest.raises(BundleError):
        parse_proto(b"\x12\x05hi")
    assert mask_crc(0) == 0xA282EAD8
