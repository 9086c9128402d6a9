import json
import os

import numpy as np
import pyarrow as pa
import pytest

import workbench
from workbench.errors import WriteError
from workbench.io.verify import verify
from workbench.io.writer import MANIFEST, STAGING, ShardWriter


def batch(n, start=0, dim=8):
    img = (np.arange(n * dim, dtype=np.float32).reshape(n, dim) + start).astype(np.float16)
    meta = pa.table({"caption": [f"c{start + i}" for i in range(n)], "n": pa.array(range(start, start + n), pa.int64())})
    return img, img * 0.5, meta


def test_cuts_shards_with_padding_and_writes_manifest(tmp_path):
    dst = tmp_path / "out"
    with ShardWriter(dst, rows_per_shard=4, padding=4, parameters={"why": "test"}) as w:
        for start in (0, 3, 6):
            img, txt, meta = batch(3, start)
            w.add(image=img, text=txt, metadata=meta)
    names = sorted(p.name for p in (dst / "img_emb").iterdir())
    assert names == ["img_emb_0000.npy", "img_emb_0001.npy", "img_emb_0002.npy"]
    m = json.loads((dst / MANIFEST).read_text())
    assert m["rows"] == 9 and [s["rows"] for s in m["shards"]] == [4, 4, 1]
    assert m["parameters"] == {"why": "test"} and len(m["files"]) == 9
    assert all(len(f["sha256"]) == 64 for f in m["files"])
    assert not (dst / STAGING).exists()
    c = workbench.open_collection(dst)
    assert len(c) == 9 and c.metadata.collect()["n"].to_list() == list(range(9))
    np.testing.assert_array_equal(np.concatenate([c.embeddings(i) for i in range(3)])[3:6], batch(3, 3)[0])
    assert verify(dst).ok


def test_failure_mid_write_leaves_nothing_half_written(tmp_path):
    dst = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with ShardWriter(dst, rows_per_shard=4) as w:
            img, txt, meta = batch(6)
            w.add(image=img, text=txt, metadata=meta)  # shard 0 finished, shard 1 half-written
            raise RuntimeError("crash")
    assert not (dst / MANIFEST).exists() and not (dst / STAGING).exists()
    assert sorted(p.name for p in (dst / "img_emb").iterdir()) == ["img_emb_0.npy"]
    # the finished shard is whole and readable; the unfinished one never got a final name
    assert np.load(dst / "img_emb" / "img_emb_0.npy").shape == (4, 8)
    with pytest.raises(workbench.ManifestError):
        verify(dst)


def test_staged_files_never_under_final_names(tmp_path, monkeypatch):
    dst = tmp_path / "out"
    seen = []
    real_replace = os.replace

    def spy(src, target):
        seen.append((str(src), str(target)))
        real_replace(src, target)

    monkeypatch.setattr(os, "replace", spy)
    with ShardWriter(dst, rows_per_shard=2) as w:
        img, txt, meta = batch(3)
        w.add(image=img, text=txt, metadata=meta)
    assert seen and all(f"/{STAGING}/" in s for s, _ in seen)
    assert all(f"/{STAGING}/" not in t for _, t in seen)


def test_refuses_non_empty_and_source(tmp_path, emb_dir):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("precious")
    with pytest.raises(WriteError, match="not empty"):
        ShardWriter(tmp_path / "busy")
    assert (tmp_path / "busy" / "keep.txt").read_text() == "precious"
    src = workbench.open_collection(emb_dir)
    for bad in (emb_dir, emb_dir / "sub", emb_dir.parent):
        with pytest.raises(WriteError, match="refusing to write into the source"):
            ShardWriter(bad, source=src)


def test_unwritable_destination_fails_early(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(WriteError, match="not a folder|not writable"):
        ShardWriter(tmp_path / "file")
    with pytest.raises(WriteError, match="not writable"):
        ShardWriter(tmp_path / "file" / "below")


def test_metadata_only_and_schema_conformed(tmp_path):
    dst = tmp_path / "meta"
    with ShardWriter(dst, rows_per_shard=10) as w:
        w.add(metadata=pa.table({"a": pa.array([1, 2], pa.int64()), "b": ["x", "y"]}))
        w.add(metadata=pa.table({"a": pa.array([3], pa.int32())}))  # missing b, narrower a
        with pytest.raises(WriteError, match="not in the first shard's schema"):
            w.add(metadata=pa.table({"a": [4], "zzz": [1]}))
    c = workbench.open_collection(dst)
    assert c.layout == "parquet" and len(c) == 3
    df = c.metadata.collect()
    assert df["a"].to_list() == [1, 2, 3] and df["b"].to_list() == ["x", "y", None]


def test_inconsistent_add_refused(tmp_path):
    with ShardWriter(tmp_path / "o") as w:
        img, txt, meta = batch(2)
        with pytest.raises(WriteError, match="row counts differ"):
            w.add(image=img, metadata=meta.slice(0, 1))
        w.add(image=img, text=txt, metadata=meta)
        with pytest.raises(WriteError, match="same parts"):
            w.add(image=img, metadata=meta)
