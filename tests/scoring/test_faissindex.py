"""faiss indexes: the memory budget and factory rule, IVF-PQ indexes built here, clip-retrieval indexes."""
from __future__ import annotations

import json
from pathlib import Path

import faiss
import numpy as np
import polars as pl
import pytest

import workbench
from conftest import make_collection, make_embeddings, unit_rows
from workbench.scoring import faissindex as F
from workbench.scoring import neighbors as N
from workbench.errors import WorkbenchError


# -- helpers ------------------------------------------------------------------------------------
def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f[f >= 0]) & set(t[t >= 0])) / (t >= 0).sum() for f, t in zip(found, truth)]))


# -- memory budget and the factory rule -------------------------------------------------------------
def test_parse_bytes():
    assert F.parse_bytes("2GB") == 2_000_000_000
    assert F.parse_bytes("512 mb") == 512_000_000
    assert F.parse_bytes("1.5GiB") == int(1.5 * 2**30)
    assert F.parse_bytes("800M") == 800_000_000
    assert F.parse_bytes(12345) == 12345
    for bad in ("lots", "2XB", "-1GB", 0, "iB"):
        with pytest.raises(WorkbenchError, match="memory budget"):
            F.parse_bytes(bad)


def test_choose_factory_rule():
    p = F.choose_factory(1_000_000, 512, "2GB")
    assert p["factory"] == "IVF1024,PQ64" and p["nprobe"] == 32 and p["estimated_bytes"] <= 2e9
    assert F.choose_factory(1_000_000, 512, "30MB")["factory"] == "IVF1024,PQ16"  # 1M x (16 + 8) + centroids
    assert F.choose_factory(5000, 32)["factory"] == "IVF64,PQ8"  # dim / 4 caps m
    assert F.choose_factory(3000, 32)["factory"] == "IVF64,PQ8"  # 3000 / 39 rows a list caps nlist at 76
    assert F.choose_factory(2000, 32)["factory"] == "IVF32,PQ8"
    assert F.choose_factory(400_000_000, 768, "1TB")["factory"] == "IVF16384_HNSW32,PQ64"
    with pytest.raises(WorkbenchError, match="cannot hold an index of 1,000,000 512-d rows.*at least 14.[0-9] MB"):
        F.choose_factory(1_000_000, 512, "10MB")


def test_budget_too_small_is_refused_before_writing(tmp_path):
    c = workbench.open_collection(make_embeddings(tmp_path / "c", rows=(300, 200), dim=16))
    out = tmp_path / "idx" / "image.index"
    with pytest.raises(WorkbenchError, match="cannot hold"):
        F.build_index(c, out, memory_budget="5kB")
    assert not out.exists() and not F.sidecar_path(out).exists()


# -- building, loading and searching an IVF-PQ index ----------------------------------------------
@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("ivfpq") / "c"
    c = workbench.open_collection(make_embeddings(root, rows=(2000, 1700, 1300), dim=32, text=False, seed=11))
    out = F.default_index_path(c)
    info = F.build_index(c, out, memory_budget="64MB")
    return c, out, info


def test_build_writes_index_and_sidecar(built):
    c, out, info = built
    assert out == Path(c.path) / ".workbench" / "image.ivfpq.index" and out.is_file()
    side = json.loads(F.sidecar_path(out).read_text())
    assert side == info
    assert side["factory"] == "IVF64,PQ8" and side["rows"] == 5000 and side["indexed"] == 5000
    assert side["dim"] == 32 and side["kind"] == "image" and side["fingerprint"] == c.fingerprint
    assert side["nprobe"] == 8 and side["nlist"] == 64 and side["code_bytes"] == 8 and side["skipped_rows"] == 0
    assert side["file_bytes"] == out.stat().st_size <= side["estimated_bytes"] <= side["memory_budget"]
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]  # atomic writes leave nothing behind
    assert F.find_index(c) == out


def test_index_is_memory_mapped_and_ids_are_global_rows(built):
    c, out, _ = built
    idx = F.load_index(out)
    assert idx.ntotal == len(c) and idx.d == 32
    ivf = faiss.extract_index_ivf(idx)
    assert ivf.nprobe == 8  # from the sidecar
    assert isinstance(faiss.downcast_InvertedLists(ivf.invlists), faiss.OnDiskInvertedLists)
    maps = Path("/proc/self/maps")
    if maps.exists():
        assert str(out.resolve()) in maps.read_text()
    inmem = F.load_index(out, mmap=False)
    assert isinstance(faiss.downcast_InvertedLists(faiss.extract_index_ivf(inmem).invlists), faiss.ArrayInvertedLists)
    q = c.take_embeddings([0, 1999, 2000, 4999])  # rows at shard edges find themselves
    s1, r1 = F.index_search(idx, q, k=5, nprobe=64)
    s2, r2 = F.index_search(inmem, q, k=5, nprobe=64)
    np.testing.assert_array_equal(r1, r2)
    assert r1[:, 0].tolist() == [0, 1999, 2000, 4999]
    assert ivf.nprobe == 8  # nprobe applied to that call only


def test_index_recall_against_exact(built):
    c, out, _ = built
    idx = F.load_index(out)
    q = unit_rows(50, 32, seed=99, offset=unit_rows(1, 32, 11 + 999)[0])  # queries from the data's cone
    _, truth = N.exact_search(c, q, k=10)
    s, found = F.index_search(idx, q, k=10, nprobe=64)
    assert s.dtype == np.float32 and found.dtype == np.int64 and found.shape == (50, 10)
    assert (np.diff(s, axis=1) <= 0).all()
    raw = recall_at(found, truth)
    assert raw >= 0.3  # all 64 lists probed: what is lost is PQ's (8-byte codes of structureless random rows)
    # search() re-ranks 4k candidates exactly: better recall, and the scores are exact cosines
    df = N.search(c, q, k=10, index=out, nprobe=64)
    ranked = df["row"].to_numpy().reshape(50, 10)
    assert recall_at(ranked, truth) >= max(raw + 0.2, 0.65)  # 0.38 and 0.76 when written
    exact = (c.take_embeddings(df["row"].to_numpy()) * q[df["query"].to_numpy()]).sum(1)
    np.testing.assert_allclose(df["score"].to_numpy(), exact, atol=1e-5)
    # through "auto": the built index is found
    auto = N.search(c, q, k=10, exact_below=0, nprobe=64)
    assert auto.equals(df)


def test_index_search_exclude_and_padding(built):
    c, out, _ = built
    idx = F.load_index(out)
    q = c.take_embeddings([10])
    _, rows = F.index_search(idx, q, k=5, nprobe=64, exclude_rows=[10])
    assert 10 not in rows[0] and (rows >= 0).all()
    faiss.extract_index_ivf(idx).nprobe = 1
    s, rows = F.index_search(idx, q, k=300)  # one list of ~80 rows: faiss's -1s become padding, last
    n = (rows[0] >= 0).sum()
    assert 0 < n < 300 and (rows[0, n:] == -1).all() and np.isneginf(s[0, n:]).all()
    with pytest.raises(WorkbenchError, match="query is 16-d, the index's vectors are 32-d"):
        F.index_search(idx, np.ones(16), k=3)


def test_stale_index_is_refused(built, tmp_path):
    c, out, _ = built
    other = workbench.open_collection(make_embeddings(tmp_path / "o", rows=(2000, 1700), dim=32, text=False))
    with pytest.raises(WorkbenchError, match="stale index: built for 5,000 rows, the collection has 3,700"):
        N.search(other, np.ones(32), index=out)
    idx = F.load_index(out)
    with pytest.raises(WorkbenchError, match="stale index: it holds 5,000 vectors, the collection has 3,700 rows"):
        N.search(other, np.ones(32), index=idx)
    with pytest.raises(WorkbenchError, match="holds 32-d vectors, the collection's image embeddings are 16-d"):
        N.search(workbench.open_collection(make_embeddings(tmp_path / "d", dim=16)), np.ones(16), index=out)


def test_rebuild_replaces_the_file_under_a_mapped_reader(built, tmp_path):
    c, _, _ = built
    out = tmp_path / "x.index"
    F.build_index(c, out, factory="IVF16,Flat")
    old = F.load_index(out)
    q = c.take_embeddings([123])
    before = F.index_search(old, q, k=3, nprobe=16)
    info = F.build_index(c, out, factory="IVF32,Flat", train_rows=2000)
    assert info["factory"] == "IVF32,Flat" and info["nlist"] == 32 and info["train_rows"] == 2000
    assert info["code_bytes"] is None and info["nprobe"] == 8
    after = F.index_search(old, q, k=3, nprobe=16)  # the old mapping still reads the old file
    np.testing.assert_array_equal(before[1], after[1])
    assert faiss.extract_index_ivf(F.load_index(out)).nlist == 32


def test_invalid_rows_are_left_out_of_the_index(tmp_path):
    arrays = [unit_rows(400, 16, seed=s).astype(np.float16) for s in (1, 2)]
    arrays[0][5] = np.nan
    arrays[1][7] = 0
    c = make_collection(tmp_path / "c", arrays)
    out = tmp_path / "i" / "image.index"
    info = F.build_index(c, out, memory_budget="1MB")
    assert info["rows"] == 800 and info["indexed"] == 798 and info["skipped_rows"] == 2
    assert info["factory"] == "IVF16,PQ4"
    df = N.search(c, unit_rows(3, 16, seed=9), k=800, index=out, nprobe=16)
    assert not {5, 407} & set(df["row"].to_list())
    assert df.group_by("query").len()["len"].to_list() == [798] * 3
    # the files changed since the build (same rows): a warning, not a refusal
    import os
    p = c.shards[0].image.path
    os.utime(p, (p.stat().st_atime, p.stat().st_mtime + 10))
    c2 = workbench.open_collection(c.path)
    with pytest.warns(UserWarning, match="changed since this index was built"):
        N.search(c2, unit_rows(1, 16, seed=9), k=3, index=out)


# -- clip-retrieval indexes -----------------------------------------------------------------------
def clip_retrieval_index(c, path: Path, kind="image", factory="IVF16,Flat", metric=faiss.METRIC_INNER_PRODUCT):
    """What clip-retrieval/autofaiss leave: every row added in row order, unit vectors, written by faiss."""
    x = np.concatenate([ch.data for ch in c.iter_embeddings(kind)])
    index = faiss.index_factory(x.shape[1], factory, metric)
    index.train(x)
    index.add(x)
    path.parent.mkdir(parents=True, exist_ok=True)
    faiss.write_index(index, str(path))
    return path


@pytest.mark.parametrize("where", ["../index", "index", "."])
def test_clip_retrieval_index_is_found_and_used(tmp_path, where):
    c = workbench.open_collection(make_embeddings(tmp_path / "embeddings", rows=(300, 250, 200), dim=16))
    assert F.find_index(c) is None
    path = clip_retrieval_index(c, (tmp_path / "embeddings" / where / "image.index").resolve())
    assert F.find_index(c).resolve() == path and F.find_index(c, "text") is None
    idx, p = F.resolve_index(c, "image", "auto", exact_below=0)
    assert p.resolve() == path and faiss.extract_index_ivf(idx).nprobe == 8  # saved with 1: default_nprobe
    assert F.resolve_index(c, "image", "auto") is None  # 750 rows: exact
    q = np.stack([N.row_query(c, 17), N.row_query(c, 600)])
    via_index = N.search(c, q, k=8, exact_below=0, exclude_rows=[17, 600], rerank=0, nprobe=16)  # all lists
    exact = N.search(c, q, k=8, exclude_rows=[17, 600])
    assert via_index["row"].to_list() == exact["row"].to_list()
    np.testing.assert_allclose(via_index["score"].to_numpy(), exact["score"].to_numpy(), atol=1e-5)
    assert via_index["caption"].to_list() == exact["caption"].to_list()


def test_clip_retrieval_text_index_and_l2_metric(tmp_path):
    c = workbench.open_collection(make_embeddings(tmp_path / "e", rows=(300, 200), dim=16))
    clip_retrieval_index(c, tmp_path / "index" / "text.index", kind="text", factory="Flat", metric=faiss.METRIC_L2)
    q = unit_rows(3, 16, seed=5)
    with pytest.raises(WorkbenchError, match="no image index was found.*build one"):
        N.search(c, q, exact_below=0)
    df = N.search(c, q, k=5, kind="text", exact_below=0, rerank=0)
    s, r = N.exact_search(c, q, k=5, kind="text")
    assert df["row"].to_list() == r.ravel().tolist()
    np.testing.assert_allclose(df["score"].to_numpy(), s.ravel(), atol=1e-4)  # 1 - d/2 is the cosine


def test_foreign_stale_index_and_unreadable_files(tmp_path):
    c = workbench.open_collection(make_embeddings(tmp_path / "e", rows=(300, 200), dim=16))
    small = workbench.open_collection(make_embeddings(tmp_path / "s", rows=(100,), dim=16))
    path = clip_retrieval_index(small, tmp_path / "index" / "image.index")
    with pytest.raises(WorkbenchError, match="stale index: it holds 100 vectors, the collection has 500 rows"):
        N.search(c, np.ones(16), exact_below=0)
    junk = tmp_path / "junk.index"
    junk.write_bytes(b"not an index at all")
    with pytest.raises(WorkbenchError, match="junk.index: cannot read this file as a faiss index"):
        F.load_index(junk)
    with pytest.raises(WorkbenchError, match="no faiss index at this path"):
        F.load_index(tmp_path / "missing.index")
    with pytest.raises(WorkbenchError, match="holds image embeddings, not text"):
        out = tmp_path / "mine.index"
        F.build_index(c, out, factory="IVF4,Flat")
        N.search(c, np.ones(16), kind="text", index=out)
    assert path.exists()


def test_index_guards(tmp_path):
    c = workbench.open_collection(make_embeddings(tmp_path / "e", rows=(300, 200), dim=16))
    foreign = clip_retrieval_index(c, tmp_path / "index" / "image.index")
    before = foreign.read_bytes()
    with pytest.raises(WorkbenchError, match="refusing to overwrite a file build_index did not write"):
        F.build_index(c, foreign, factory="IVF4,Flat")
    assert foreign.read_bytes() == before
    # an index and a sidecar that do not belong together
    out = tmp_path / "mine.index"
    F.build_index(c, out, factory="IVF4,Flat")
    side = F.sidecar_path(out).read_text()
    F.sidecar_path(foreign).write_text(side)
    F.sidecar_path(out).unlink()
    small = workbench.open_collection(make_embeddings(tmp_path / "s", rows=(100,), dim=16))
    x = np.concatenate([ch.data for ch in small.iter_embeddings()])
    idx = faiss.index_factory(16, "Flat", faiss.METRIC_INNER_PRODUCT)
    idx.add(x)
    faiss.write_index(idx, str(foreign))  # 100 vectors, the sidecar says 500
    with pytest.raises(WorkbenchError, match="holds 100 vectors, its sidecar says 500: one of them was replaced"):
        N.search(c, np.ones(16), index=foreign)
    # ids that are not this collection's rows
    ided = faiss.IndexIDMap(faiss.IndexFlatIP(16))
    xc = np.concatenate([ch.data for ch in c.iter_embeddings()])
    ided.add_with_ids(xc, np.arange(len(c)) + 1000)
    with pytest.raises(WorkbenchError, match="returned row 1,[0-9]{3}, the collection has 500 rows"):
        N.search(c, xc[0], index=ided)
    # exclude_rows in any iterable form
    s1, r1 = N.exact_search(c, xc[0], k=5, exclude_rows={0, 1})
    s2, r2 = N.exact_search(c, xc[0], k=5, exclude_rows=pl.Series([1, 0]))
    assert r1.tolist() == r2.tolist() and not {0, 1} & set(r1[0].tolist())
    with pytest.raises(WorkbenchError, match="exclude_rows must be row ids"):
        N.exact_search(c, xc[0], exclude_rows=["a"])
