import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import workbench
from conftest import make_datacomp, make_embeddings, make_parquet_only, make_webdataset
from workbench.errors import NoEmbeddingsError


def test_len_rows_and_global_ids(emb_dir):
    c = workbench.open_collection(emb_dir)
    assert len(c) == 15 and c.dim == 16 and c.layout == "embeddings"
    df = c.metadata.collect()
    assert df["row"].to_list() == list(range(15))
    # canonical order: shard 0 rows, then shard 1, ... in file order
    assert df["SAMPLE_ID"].to_list() == list(range(15))
    assert df["caption"].to_list() == df["TEXT"].to_list() and df["url"].to_list() == df["URL"].to_list()
    assert df.schema["key"] == pl.Utf8 and df.schema["similarity"] == pl.Float64


def test_row_ids_stable_across_sessions(tmp_path):
    root = make_embeddings(tmp_path / "c", rows=tuple(range(1, 13)))
    a = workbench.open_collection(root).metadata.collect()
    b = workbench.open_collection(root).metadata.collect()
    assert a.equals(b) and a["SAMPLE_ID"].to_list() == list(range(78))
    assert workbench.open_collection(root).fingerprint == workbench.open_collection(root).fingerprint


def test_metadata_is_lazy(emb_dir):
    c = workbench.open_collection(emb_dir)
    assert isinstance(c.metadata, pl.LazyFrame)
    got = c.metadata.filter(pl.col("similarity") > 0.39).select("row").collect()["row"].to_list()
    assert got and all(r in range(15) for r in got)


def test_embeddings_memmapped_and_streamed(emb_dir):
    c = workbench.open_collection(emb_dir)
    assert isinstance(c.embeddings(1), np.memmap)
    chunks = list(c.iter_embeddings(chunk_rows=4))
    assert [ch.start for ch in chunks] == [0, 4, 5, 9, 12]
    stacked = np.concatenate([ch.data for ch in chunks])
    assert stacked.shape == (15, 16) and stacked.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(stacked, axis=1), 1, atol=1e-5)
    raw = np.concatenate([ch.data for ch in c.iter_embeddings(normalize=False)])
    assert raw.dtype == np.float16
    rows = [14, 0, 6, 5]
    np.testing.assert_allclose(c.take_embeddings(rows), stacked[rows], atol=1e-6)
    np.testing.assert_array_equal(c.take_embeddings(rows, "text", normalize=False),
                                  np.concatenate([c.embeddings(i, "text") for i in range(3)])[rows])
    with pytest.raises(IndexError, match="row 15 is out of range"):
        c.take_embeddings([15])


def test_normalise_on_read_flags_bad_rows(tmp_path):
    root = make_embeddings(tmp_path / "c", rows=(4,), dtype="float32", text=False)
    arr = np.load(root / "img_emb" / "img_emb_0.npy")
    arr[1] = np.nan
    arr[2] = 0
    arr[3] *= 3
    np.save(root / "img_emb" / "img_emb_0.npy", arr)
    ch = next(workbench.open_collection(root).iter_embeddings())
    assert ch.valid.tolist() == [True, False, False, True]
    assert np.all(ch.data[1] == 0) and np.all(ch.data[2] == 0)
    np.testing.assert_allclose(np.linalg.norm(ch.data[3]), 1, atol=1e-6)


def test_metadata_only_says_so(tmp_path):
    c = workbench.open_collection(make_parquet_only(tmp_path / "p"))
    assert len(c) == 10 and c.dim is None and not c.has_embeddings
    df = c.metadata.collect()
    assert {"url", "caption", "punsafe", "pwatermark", "hash", "similarity"} <= set(df.columns)
    assert df["row"].to_list() == list(range(10))
    with pytest.raises(NoEmbeddingsError, match="no embeddings \\(metadata only\\)"):
        next(c.iter_embeddings())
    with pytest.raises(NoEmbeddingsError):
        c.embeddings(0)
    only = workbench.open_collection(make_parquet_only(tmp_path / "q", with_scores=False))
    assert set(only.metadata.collect().columns) == {"row", "URL", "TEXT", "url", "caption"}


def test_datacomp(tmp_path):
    c = workbench.open_collection(make_datacomp(tmp_path / "dc", compressed=True), model="b32")
    assert len(c) == 10 and c.dim == 512 and c.model == "b32"
    df = c.metadata.collect()
    assert df["similarity"].to_list() == pytest.approx([0.25] * 10)
    assert df["caption"].to_list()[0] == "datacomp text 0" and df["width"].to_list()[0] == 300
    assert sum(len(ch.data) for ch in c.iter_embeddings("text")) == 10


def test_webdataset_collection(tmp_path):
    c = workbench.open_collection(make_webdataset(tmp_path / "w", per_shard=(3, 2)))
    df = c.metadata.collect()
    assert len(c) == 5 and df["row"].to_list() == list(range(5))
    assert set(df["status"]) == {"success"}
    assert df["key"].to_list() == ["000000001", "000000002", "000000003", "000010001", "000010002"]
    with pytest.raises(NoEmbeddingsError):
        c.embeddings(0)


def test_mixed_schemas_across_shards(tmp_path):
    root = make_embeddings(tmp_path / "c", rows=(3, 3))
    t = pq.read_table(root / "metadata" / "metadata_1.parquet").drop(["LICENSE"]).append_column("extra", pa.array([1, 2, 3]))
    pq.write_table(t, root / "metadata" / "metadata_1.parquet")
    df = workbench.open_collection(root).metadata.collect()
    assert df["LICENSE"].to_list()[3:] == [None] * 3 and df["extra"].to_list()[:3] == [None] * 3
    assert df["row"].to_list() == list(range(6))


def test_info_reads_headers_only(emb_dir):
    info = workbench.open_collection(emb_dir).info()
    assert info["rows"] == 15 and info["dim"] == 16 and info["shards"] == 3 and info["layout"] == "embeddings"
    assert "caption" in info["columns"] and info["canonical"]["caption"] == "TEXT"
