"""Nearest neighbours: exact search against brute force, the search entry point and its DataFrame."""
from __future__ import annotations


import numpy as np
import polars as pl
import pytest

import workbench
from conftest import make_collection, make_embeddings, unit_rows
from workbench.scoring import neighbors as N
from workbench.errors import NoEmbeddingsError, WorkbenchError


# -- helpers ------------------------------------------------------------------------------------
def all_embeddings(c, kind="image") -> np.ndarray:
    """Every row, stored values, as float64 (the reference the fast paths are checked against)."""
    return np.concatenate([np.asarray(c.embeddings(i, kind), dtype=np.float64) for i in range(len(c.shards))])


def brute_force(c, queries, k, kind="image", exclude=()):
    """Exact top-k by cosine in float64 numpy; invalid rows and `exclude` left out, ties by lower row."""
    e = all_embeddings(c, kind)
    with np.errstate(invalid="ignore", over="ignore"):
        norms = np.linalg.norm(e, axis=1)
    ok = np.isfinite(norms) & (norms > 1e-12)
    ok[list(exclude)] = False
    e = np.where(ok[:, None], e, 0) / np.where(ok, norms, 1)[:, None]
    q = np.atleast_2d(np.asarray(queries, dtype=np.float64))
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    s = q @ e.T
    rows_out, scores_out = [], []
    for i in range(len(q)):
        cand = np.nonzero(ok)[0]
        order = cand[np.lexsort((cand, -s[i, cand]))][:k]
        rows_out.append(np.pad(order, (0, k - len(order)), constant_values=-1))
        scores_out.append(np.pad(s[i, order], (0, k - len(order)), constant_values=-np.inf))
    return np.array(scores_out), np.array(rows_out)


# -- exact search ---------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float16", "float32"])
@pytest.mark.parametrize("chunk_rows", [3, 262_144])
def test_exact_matches_brute_force(tmp_path, dtype, chunk_rows):
    c = workbench.open_collection(make_embeddings(tmp_path / "c", rows=(5, 7, 3), dim=16, dtype=dtype))
    q = unit_rows(4, 16, seed=42)
    for k in (1, 6, 15):
        scores, rows = N.exact_search(c, q, k=k, chunk_rows=chunk_rows)
        ref_s, ref_r = brute_force(c, q, k)
        assert scores.dtype == np.float32 and rows.dtype == np.int64 and rows.shape == (4, k)
        np.testing.assert_array_equal(rows, ref_r)
        np.testing.assert_allclose(scores, ref_s, atol=1e-5)
        assert (np.diff(scores, axis=1) <= 0).all()


def test_exact_one_vector_and_exclude_rows_across_shards(tmp_path):
    c = workbench.open_collection(make_embeddings(tmp_path / "c", rows=(5, 7, 3), dim=16))
    q = N.row_query(c, 6)
    assert q.shape == (16,)
    scores, rows = N.exact_search(c, q, k=5)
    assert rows.shape == (1, 5) and rows[0, 0] == 6 and scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    # one row from every shard excluded, the query row included: they never come back
    exclude = [6, 0, 4, 5, 14]
    scores, rows = N.exact_search(c, q, k=15, exclude_rows=exclude, chunk_rows=4)
    ref_s, ref_r = brute_force(c, q, 15, exclude=exclude)
    np.testing.assert_array_equal(rows, ref_r)
    np.testing.assert_allclose(scores, ref_s, atol=1e-5)
    assert not set(exclude) & set(rows[0].tolist())


def test_k_larger_than_rows_pads_with_minus_one_and_minus_inf(tmp_path):
    c = workbench.open_collection(make_embeddings(tmp_path / "c", rows=(5, 7, 3), dim=16))
    scores, rows = N.exact_search(c, unit_rows(2, 16, seed=1), k=20, exclude_rows=[1, 2])
    assert rows.shape == (2, 20)
    assert (rows[:, :13] >= 0).all() and (rows[:, 13:] == -1).all()
    assert np.isfinite(scores[:, :13]).all() and np.isneginf(scores[:, 13:]).all()
    assert sorted(rows[0, :13].tolist()) == [r for r in range(15) if r not in (1, 2)]


def test_invalid_rows_are_never_returned(tmp_path):
    a = unit_rows(6, 8, seed=3).astype(np.float16)
    b = unit_rows(6, 8, seed=4).astype(np.float16)
    a[1, 2] = np.nan
    a[4] = 0
    b[2, 0] = np.inf
    c = make_collection(tmp_path / "c", [a, b])
    scores, rows = N.exact_search(c, unit_rows(3, 8, seed=5), k=12)
    assert not {1, 4, 8} & set(rows.ravel().tolist())
    assert (rows[:, 9:] == -1).all() and (rows[:, :9] >= 0).all()
    with pytest.raises(WorkbenchError, match="not usable"):
        N.row_query(c, 4)


@pytest.mark.parametrize("chunk_rows", [4, 262_144])
def test_ties_go_to_the_lower_row(tmp_path, chunk_rows):
    base = unit_rows(40, 16, seed=7)
    dup = unit_rows(1, 16, seed=8)[0]
    arrays = [base[:10].copy(), base[10:30].copy(), base[30:].copy()]
    for shard, local in [(0, 7), (1, 3), (1, 4), (1, 15), (2, 1), (0, 2)]:  # global 7, 13, 14, 25, 31, 2
        arrays[shard][local] = dup
    c = make_collection(tmp_path / "c", [x.astype(np.float32) for x in arrays])
    for k, want in [(1, [2]), (2, [2, 7]), (4, [2, 7, 13, 14]), (6, [2, 7, 13, 14, 25, 31])]:
        scores, rows = N.exact_search(c, dup, k=k, chunk_rows=chunk_rows)
        assert rows[0].tolist() == want
        assert len(set(scores[0].tolist())) == 1
    scores, rows = N.exact_search(c, dup, k=3, chunk_rows=chunk_rows, exclude_rows=[2, 13])
    assert rows[0].tolist() == [7, 14, 25]


def test_text_embeddings(tmp_path):
    c = workbench.open_collection(make_embeddings(tmp_path / "c", rows=(5, 7, 3), dim=16))
    q = N.row_query(c, 9, kind="text")
    np.testing.assert_allclose(q, c.take_embeddings([9], "text")[0])
    scores, rows = N.exact_search(c, q, k=15, kind="text")
    ref_s, ref_r = brute_force(c, q, 15, kind="text")
    np.testing.assert_array_equal(rows, ref_r)
    assert rows[0, 0] == 9


def test_query_checks(tmp_path):
    c = workbench.open_collection(make_embeddings(tmp_path / "c", rows=(5, 7, 3), dim=16, text=False))
    with pytest.raises(WorkbenchError, match="query is 8-d, the collection's image embeddings are 16-d"):
        N.exact_search(c, np.ones(8), k=3)
    with pytest.raises(WorkbenchError, match="query is 8-d"):
        N.search(c, np.ones((2, 8)), k=3)
    with pytest.raises(WorkbenchError, match="zero vector"):
        N.exact_search(c, np.zeros(16), k=3)
    with pytest.raises(WorkbenchError, match="NaN or inf"):
        N.exact_search(c, np.full(16, np.nan), k=3)
    with pytest.raises(WorkbenchError, match="k must be a positive integer"):
        N.exact_search(c, np.ones(16), k=0)
    with pytest.raises(WorkbenchError, match=r"\(d,\) vector or a \(q, d\) array"):
        N.exact_search(c, np.ones((2, 2, 16)), k=3)
    with pytest.raises(NoEmbeddingsError, match="no text embeddings"):
        N.exact_search(c, np.ones(16), kind="text")
    with pytest.raises(WorkbenchError, match="row 15 is out of range"):
        N.row_query(c, 15)


# -- search: the DataFrame ------------------------------------------------------------------------
def test_search_frame_joins_url_and_caption(tmp_path):
    c = workbench.open_collection(make_embeddings(tmp_path / "c", rows=(5, 7, 3), dim=16))
    q = np.stack([N.row_query(c, 3), N.row_query(c, 12)])
    df = N.search(c, q, k=4, exclude_rows=[3, 12])
    assert df.columns == ["query", "rank", "row", "score", "url", "caption"]
    assert df.schema["query"] == pl.Int32 and df.schema["rank"] == pl.Int32
    assert df.schema["row"] == pl.Int64 and df.schema["score"] == pl.Float32
    assert df["query"].to_list() == [0] * 4 + [1] * 4 and df["rank"].to_list() == [1, 2, 3, 4] * 2
    _, rows = N.exact_search(c, q, k=4, exclude_rows=[3, 12])
    assert df["row"].to_list() == rows.ravel().tolist()
    for r, url, cap in df.select("row", "url", "caption").iter_rows():
        assert cap == f"caption number {r}" and url == f"https://synthetic.invalid/img/{r}.jpg"
    # padding is dropped from the frame
    df = N.search(c, q[0], k=50)
    assert len(df) == 15 and df["row"].n_unique() == 15


def test_metadata_join_reads_row_groups_and_success_only_shards(tmp_path):
    import pyarrow.parquet as pq
    from conftest import make_webdataset

    root = make_embeddings(tmp_path / "c", rows=(300, 200), dim=16, metadata="laion5b")
    for p in (root / "metadata").glob("*.parquet"):  # several row groups per shard
        pq.write_table(pq.read_table(p), p, row_group_size=64)
    c = workbench.open_collection(root)
    rows = np.array([[0, 63, 64, 299, 300, 499], [130, 1, 450, 299, -1, -1]])
    scores = np.tile(np.linspace(1, 0, 6, dtype=np.float32), (2, 1))
    df = N.results_frame(c, scores, rows)
    meta = c.metadata.select("row", "url", "caption").collect()
    want = pl.DataFrame({"row": rows[rows >= 0]}).join(meta, on="row", how="left")
    assert df.select("row", "url", "caption").equals(want)
    assert df["caption"][3] == "a synthetic caption 299" and len(df) == 10
    N.SLICE_RUNS_MAX, saved = 0, N.SLICE_RUNS_MAX  # many rows: read through their row groups instead
    try:
        assert N.results_frame(c, scores, rows).equals(df)
    finally:
        N.SLICE_RUNS_MAX = saved
    # img2dataset: row ids count the successful rows only
    w = workbench.open_collection(make_webdataset(tmp_path / "w", per_shard=(3, 2), failed_per_shard=1))
    rows = np.array([[4, 0, 2, 3]])
    df = N.results_frame(w, np.ones((1, 4), np.float32), rows)
    meta = w.metadata.select("row", "url", "caption").collect()
    assert df.select("row", "url", "caption").equals(pl.DataFrame({"row": [4, 0, 2, 3]}).join(meta, on="row", how="left"))
    assert df["url"].null_count() == 0


def test_search_without_metadata_columns(tmp_path):
    c = workbench.open_collection(make_embeddings(tmp_path / "c", rows=(5, 7), dim=16, metadata=None))
    df = N.search(c, N.row_query(c, 0), k=3)
    assert df.columns == ["query", "rank", "row", "score"] and df["row"][0] == 0
