"""The map: UMAP fitted on a sample (real umap-learn), every other row placed by its nearest sample rows."""
import time
import warnings

import numpy as np
import polars as pl
import pytest

import workbench
from conftest import make_collection, make_parquet_only, unit_rows
from workbench.demo.build import load_ground_truth
from workbench.errors import NoEmbeddingsError, WorkbenchError
from workbench.map.projection import ProjectionScorer, pca_2d, project, sample_rows
from workbench.scoring.compute import compute

SAMPLE = 2000  # of the demo world's 6,000 rows: 4,000 are placed
EPOCHS = 100


@pytest.fixture(scope="module")
def demo_map(demo_master):
    """One map of the (read-only) demo world, shared by the tests below: (collection, xy, info, stages)."""
    c = workbench.open_collection(demo_master)
    stages, info = [], {}
    xy = project(c, sample=SAMPLE, n_epochs=EPOCHS, seed=0, info=info, progress=lambda s, f: stages.append((s, f)))
    return c, xy, info, stages


def _nan_collection(tmp_path, rows=(300, 250, 150), dim=32):
    """A small collection of a few clusters, with NaN / inf / zero rows in two shards."""
    rng = np.random.default_rng(3)
    centres = unit_rows(6, dim, 11)
    arrays = []
    for i, n in enumerate(rows):
        x = centres[rng.integers(0, 6, n)] + 0.35 * rng.standard_normal((n, dim)) / np.sqrt(dim)
        x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float16)
        arrays.append(x)
    arrays[0][5, 3] = np.nan
    arrays[0][100] = 0
    arrays[2][7, 0] = np.inf
    c = make_collection(tmp_path / "nan", arrays)
    bad = np.array([5, 100, rows[0] + rows[1] + 7])
    return c, bad


# -- sampling and PCA --------------------------------------------------------------------------------
def test_sample_rows_are_uniform_over_shards_sorted_and_seeded(demo_master):
    c = workbench.open_collection(demo_master)
    s = sample_rows(c, 3000, seed=1)
    assert s.dtype == np.int64 and len(s) == 3000 and len(np.unique(s)) == 3000
    assert np.all(np.diff(s) > 0) and s[0] >= 0 and s[-1] < len(c)
    per_shard = np.bincount(c.shard_of(s), minlength=len(c.shards))
    expected = 3000 * np.diff(c.offsets) / len(c)
    assert np.all(np.abs(per_shard - expected) < 0.1 * expected + 30)
    assert np.array_equal(s, sample_rows(c, 3000, seed=1))
    assert not np.array_equal(s, sample_rows(c, 3000, seed=2))
    assert np.array_equal(sample_rows(c, len(c)), np.arange(len(c)))
    assert np.array_equal(sample_rows(c, 10**9), np.arange(len(c)))


def test_pca_2d_gives_the_top_two_principal_components():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 8)) * np.array([5, 0.1, 2, 0.1, 0.1, 0.1, 0.1, 0.1]) + 3.0
    y = pca_2d(x.astype(np.float32))
    assert y.shape == (500, 2) and y.dtype == np.float32
    xc = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(xc, full_matrices=False)
    ref = xc @ vt[:2].T
    np.testing.assert_allclose(np.abs(y), np.abs(ref), rtol=1e-4, atol=1e-4)
    assert np.array_equal(y, pca_2d(x.astype(np.float32)))  # same data, same picture (signs fixed)
    assert pca_2d(np.ones((1, 4))).shape == (1, 2)


# -- the map -------------------------------------------------------------------------------------------
def test_every_valid_row_gets_a_finite_position_and_progress_runs_in_order(demo_map):
    c, xy, info, stages = demo_map
    assert xy.shape == (len(c), 2) and xy.dtype == np.float32
    assert np.isfinite(xy).all()
    assert info["sample"] == SAMPLE and info["placed"] == len(c) - SAMPLE
    order = [s for i, (s, _) in enumerate(stages) if i == 0 or stages[i - 1][0] != s]
    assert order == ["sample", "umap", "place", "done"]
    assert [f for s, f in stages if s == "umap"] == [None]
    place = [f for s, f in stages if s == "place"]
    assert place[0] == 0.0 and place[-1] == 1.0 and place == sorted(place)


def test_sample_rows_keep_their_umap_positions(demo_map):
    import umap

    c, xy, info, _ = demo_map
    rows = sample_rows(c, SAMPLE, seed=0)
    x = c.take_embeddings(rows)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # n_jobs overridden by random_state
        ref = umap.UMAP(n_neighbors=15, min_dist=0.1, metric="cosine", random_state=0, n_epochs=EPOCHS,
                        low_memory=True).fit_transform(x)
    np.testing.assert_allclose(xy[rows], ref, atol=1e-4)


def test_placed_rows_land_beside_their_nearest_sample_rows(demo_map):
    c, xy, _, _ = demo_map
    rows = sample_rows(c, SAMPLE, seed=0)
    placed = np.setdiff1d(np.arange(len(c)), rows)
    xs = c.take_embeddings(rows).astype(np.float64)
    xp = c.take_embeddings(placed).astype(np.float64)
    top1 = rows[np.argmax(xp @ xs.T, axis=1)]
    other = np.random.default_rng(0).choice(rows, len(placed))
    d_top = np.linalg.norm(xy[placed] - xy[top1], axis=1)
    d_other = np.linalg.norm(xy[placed] - xy[other], axis=1)
    assert np.mean(d_top < d_other) > 0.9
    assert np.median(d_top) < 0.25 * np.median(d_other)


def test_rows_of_one_object_gather_on_the_map(demo_map, demo_master):
    c, xy, _, _ = demo_map
    gt = load_ground_truth(demo_master)
    objects = gt["objects"].to_list()
    single = np.array([len(o) == 1 for o in objects])
    label = np.array([o[0] if len(o) == 1 else "" for o in objects])
    idx = np.flatnonzero(single)
    rng = np.random.default_rng(0)
    a, b = rng.choice(idx, 20000), rng.choice(idx, 20000)
    d = np.linalg.norm(xy[a] - xy[b], axis=1)
    same = label[a] == label[b]
    assert d[same].mean() < 0.4 * d[~same].mean()
    # placed rows too: the same comparison among rows outside the sample
    placed = np.setdiff1d(idx, sample_rows(c, SAMPLE, seed=0))
    a, b = rng.choice(placed, 20000), rng.choice(placed, 20000)
    d = np.linalg.norm(xy[a] - xy[b], axis=1)
    same = label[a] == label[b]
    assert d[same].mean() < 0.4 * d[~same].mean()


def test_invalid_rows_get_nan_and_the_rest_are_placed(tmp_path):
    c, bad = _nan_collection(tmp_path)
    xy = project(c, sample=200, n_epochs=30)
    assert np.isnan(xy[bad]).all()
    good = np.setdiff1d(np.arange(len(c)), bad)
    assert np.isfinite(xy[good]).all()
    # a sample holding every row: nothing to place, invalid rows still NaN
    xy_all = project(c, sample=10_000, n_epochs=30)
    assert np.isnan(xy_all[bad]).all() and np.isfinite(xy_all[good]).all()


def test_large_samples_find_neighbours_by_lists(demo_master, monkeypatch):
    from workbench.map import placement as projection
    from workbench.map.placement import _Neighbours

    c = workbench.open_collection(demo_master)
    rows = sample_rows(c, 3000, seed=0)
    sample = c.take_embeddings(rows)
    queries = c.take_embeddings(np.setdiff1d(np.arange(len(c)), rows))
    monkeypatch.setattr(projection, "EXACT_PLACE_MAX", 1000)
    nb = _Neighbours(sample, 10, seed=0, precision="float32")
    assert nb.method.startswith("grouped")
    sims, idx = nb.search(queries)
    exact = np.argsort(-(queries.astype(np.float64) @ sample.T.astype(np.float64)), axis=1)[:, :10]
    assert idx.shape == (len(queries), 10) and idx.min() >= 0 and idx.max() < len(sample)
    assert np.all(np.diff(sims, axis=1) <= 1e-6)  # best first
    np.testing.assert_allclose(sims, np.einsum("nd,nkd->nk", queries, sample[idx]), atol=1e-4)
    assert np.mean(idx[:, 0] == exact[:, 0]) > 0.9
    assert np.mean([len(set(a) & set(b)) for a, b in zip(idx, exact)]) > 7


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_the_top_k_kernel_matches_a_sort(dtype):
    """The top-k kernel on bfloat16 or float32 bit patterns: the k largest values of the first n
    columns, largest first, ties by the lower column, exactly as a stable sort of the values
    (negatives, zeros, -inf, ties, padding columns beyond n, widths split into stripes and widths
    too narrow or odd for them)."""
    import torch
    from workbench.map.placement_numba import top_k

    rng = np.random.default_rng(3)
    width = torch.int16 if dtype == "bfloat16" else torch.int32
    for m, n, k, pad in [(7, 1000, 10, 9), (33, 37, 5, 9), (4, 16, 16, 9), (5, 300, 1, 9), (6, 1015, 10, 9),
                         (9, 119, 10, 9), (3, 71, 12, 9), (8, 896, 10, 128), (4, 10, 10, 118)]:
        vals = rng.standard_normal((m, n + pad)).astype(np.float32) * 0.1 + rng.choice([-0.6, 0.0, 0.6], (m, 1))
        vals[:, ::7] = np.round(vals[:, ::7], 1)  # many ties
        vals[0, :5] = [0.0, -0.0, -np.inf, 1.0, 1.0]
        h = torch.from_numpy(vals).to(getattr(torch, dtype))
        f = h.float().numpy()
        bits = np.zeros((m, k), np.uint32)
        cols = np.zeros((m, k), np.int64)
        top_k(h.view(width).numpy(), m, n, k, bits, cols)
        want = np.argsort(-f[:, :n], axis=1, kind="stable")[:, :k]
        got = bits.view(np.float32)
        np.testing.assert_array_equal(got, np.take_along_axis(f, want, axis=1))
        zero = f[:, :n] == 0  # +0 and -0 are equal values but may swap places
        same = np.take_along_axis(~zero, want, axis=1)
        np.testing.assert_array_equal(cols[same], want[same])


def test_the_weighted_means_kernel_gives_the_numpy_bytes(monkeypatch):
    """Positions from the numba kernel equal the numpy fallback's bit for bit (float64 terms in a
    fixed order), missing neighbours (-1) weigh nothing, and weights favour the nearest."""
    from workbench.io import kernels
    from workbench.map.placement import _place

    rng = np.random.default_rng(5)
    sims = -np.sort(-rng.uniform(0.3, 0.95, (5000, 10)).astype(np.float32), axis=1)
    idx = rng.integers(0, 300, (5000, 10))
    idx[::7, 6:] = -1
    pos = rng.standard_normal((300, 2)).astype(np.float32)
    fast = _place(sims, idx, pos)
    monkeypatch.setattr(kernels, "_numba", lambda: None)
    slow = _place(sims, idx, pos)
    assert fast.dtype == np.float32 and np.array_equal(fast, slow)
    one = _place(np.array([[0.9, 0.5]], np.float32), np.array([[3, 4]]), pos)  # 0.4 apart: weight e^-8
    assert np.linalg.norm(one[0] - pos[3]) < 1e-3 * (1 + np.linalg.norm(pos[4] - pos[3]))
    assert np.array_equal(_place(sims[:1], np.array([[7] + [-1] * 9]), pos)[0], pos[7])


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_the_argmax_kernel_takes_the_first_largest_of_the_first_n_columns(dtype):
    import torch
    from workbench.map.placement_numba import argmax

    rng = np.random.default_rng(4)
    vals = np.round(rng.standard_normal((50, 70)).astype(np.float32), 1)  # ties
    vals[0, :3] = [-np.inf, -0.0, -0.0]
    vals[0, 3:] = -1.0
    vals[1, 60:] = 9.0  # beyond n: never chosen
    h = torch.from_numpy(vals).to(getattr(torch, dtype))
    out = np.full(50, -1, np.int64)
    argmax(h.view(torch.int16 if dtype == "bfloat16" else torch.int32).numpy(), 49, 60, out)
    np.testing.assert_array_equal(out[:49], np.argmax(h.float().numpy()[:49, :60], axis=1))
    assert out[49] == -1 and out[0] == 1


def test_half_precision_products_find_the_same_neighbours(demo_master, monkeypatch):
    """The grouped search with bfloat16 products (the default on CPUs with AMX) finds the neighbours
    the float32 products find, with similarities within bfloat16's rounding, and places rows where
    float32 does (checked on every CPU: bfloat16 runs everywhere, slowly without AMX)."""
    from workbench.map import placement
    from workbench.map.placement import _Neighbours, _place

    c = workbench.open_collection(demo_master)
    rows = sample_rows(c, 3000, seed=0)
    sample = c.take_embeddings(rows)
    queries = c.take_embeddings(np.setdiff1d(np.arange(len(c)), rows)[:4000])
    monkeypatch.setattr(placement, "EXACT_PLACE_MAX", 1000)
    half = _Neighbours(sample, 10, seed=0, precision="bfloat16")
    full = _Neighbours(sample, 10, seed=0, precision="float32")
    assert half.method.endswith("bfloat16 products") and "bfloat16" not in full.method
    sh, ih = half.search(queries)
    sf, i_f = full.search(queries)
    assert np.all(np.diff(sh, axis=1) <= 0)  # best first
    np.testing.assert_allclose(sh, np.einsum("nd,nkd->nk", queries, sample[ih]), atol=8e-3)
    assert np.mean(ih[:, 0] == i_f[:, 0]) > 0.9
    assert np.mean([len(set(a) & set(b)) for a, b in zip(ih, i_f)]) > 8
    fitted = np.random.default_rng(0).standard_normal((len(sample), 2)).astype(np.float32) * 10
    gap = np.linalg.norm(_place(sh, ih, fitted) - _place(sf, i_f, fitted), axis=1)
    assert np.median(gap) < 0.05 * np.median(np.linalg.norm(fitted - fitted.mean(0), axis=1))
    # a placer read back from its file keeps the driver's precision
    again = _Neighbours.from_arrays(half.arrays())
    assert again.precision == "bfloat16"
    s2, i2 = again.search(queries)
    assert np.array_equal(s2, sh) and np.array_equal(i2, ih)
    with pytest.raises(workbench.WorkbenchError, match="precision"):
        _Neighbours(sample, 10, seed=0, precision="half")
    # stored fp16 rows go straight to unit bfloat16 rows: the float32 unit rows, rounded to nearest
    import torch
    from workbench.io.kernels import normalize_rows

    raw = (queries[:500] * 3).astype(np.float16)
    raw[3], raw[7], raw[11] = np.nan, np.inf, 0.0
    qh, valid = half.queries(raw)
    want, want_valid = normalize_rows(raw)
    assert np.array_equal(valid, want_valid) and not valid[[3, 7, 11]].any() and valid.sum() == 497
    assert torch.equal(qh, torch.from_numpy(want).to(torch.bfloat16))
    q32, v32 = full.queries(raw.astype(np.float32))
    assert np.array_equal(v32, want_valid) and np.allclose(q32, want, atol=1e-3)


def test_the_list_search_places_rows_too(tmp_path, monkeypatch):
    from workbench.map import placement as projection
    c, bad = _nan_collection(tmp_path, rows=(1500, 1000, 500))
    monkeypatch.setattr(projection, "EXACT_PLACE_MAX", 100)
    info = {}
    xy = project(c, sample=1200, n_epochs=30, place_k=5, info=info)
    assert info["neighbours"].startswith("grouped")
    assert np.isnan(xy[bad]).all()
    assert np.isfinite(np.delete(xy, bad, axis=0)).all()


def test_tiny_collections_still_get_a_map(tmp_path):
    c = make_collection(tmp_path / "tiny", [unit_rows(3, 8, 0).astype(np.float16), unit_rows(2, 8, 1).astype(np.float16)])
    xy = project(c, sample=3, n_epochs=10)
    assert xy.shape == (5, 2) and np.isfinite(xy).all()


def test_bad_inputs_fail_before_any_work(tmp_path, demo_master):
    c = workbench.open_collection(demo_master)
    for kw, msg in [({"kind": "audio"}, "kind"), ({"sample": 2}, "sample"), ({"sample": 2.5}, "sample"),
                    ({"n_neighbors": 1}, "n_neighbors"), ({"place_k": 0}, "place_k"), ({"n_epochs": 0}, "n_epochs"),
                    ({"min_dist": -1}, "min_dist"), ({"seed": -1}, "seed"), ({"progress": 3}, "progress")]:
        with pytest.raises(WorkbenchError, match=msg):
            project(c, **kw)
    meta_only = workbench.open_collection(make_parquet_only(tmp_path / "meta"))
    with pytest.raises(NoEmbeddingsError, match="no embeddings"):
        project(meta_only)
    img_only = make_collection(tmp_path / "img", [unit_rows(10, 8, 0).astype(np.float16)])
    with pytest.raises(NoEmbeddingsError, match="text embeddings"):
        project(img_only, kind="text")
    with pytest.raises(WorkbenchError, match="sample"):
        compute(c, [ProjectionScorer(sample=1)], cache=False)


def test_the_scorer_caches_the_map_so_reopening_is_instant(tmp_path):
    c, bad = _nan_collection(tmp_path)
    stages = []
    scorer = ProjectionScorer(sample=200, n_epochs=30, progress=lambda s, f: stages.append(s))
    res = compute(c, [scorer])
    assert res.report["map_x"]["computed"] == len(c.shards) and res.report["map_x"]["cached"] == 0
    assert stages[-1] == "done"
    first = res.collect()
    assert first.columns == ["row", "map_x", "map_y"]
    assert first.schema["map_x"] == pl.Float32 and first.schema["map_y"] == pl.Float32
    assert first["map_x"].null_count() == len(bad) and first["map_x"][bad.tolist()].is_null().all()
    ref = project(c, sample=200, n_epochs=30)
    np.testing.assert_array_equal(first.select("map_x", "map_y").fill_null(np.nan).to_numpy(), ref)

    c2 = workbench.open_collection(c.path)  # reopened
    stages.clear()
    t0 = time.perf_counter()
    again = compute(c2, [ProjectionScorer(sample=200, n_epochs=30, progress=lambda s, f: stages.append(s))])
    frame = again.collect()
    assert time.perf_counter() - t0 < 5.0  # no fit: a few parquet reads
    assert again.report["map_x"]["cached"] == len(c.shards) and again.report["map_x"]["computed"] == 0
    assert stages == []  # nothing fitted
    assert frame.equals(first)
    other = compute(c2, [ProjectionScorer(sample=200, n_epochs=30, min_dist=0.5)])  # another map: computed
    assert other.report["map_x"]["computed"] == len(c.shards)


def test_default_sample_is_shared_by_notebook_and_cli():
    from workbench.map.projection import ProjectionScorer, default_sample

    assert [default_sample(n) for n in (6_000, 100_000, 200_000, 10**9)] == [20_000, 20_000, 40_000, 50_000]
    s = ProjectionScorer()
    assert s.sample is None  # resolved against the collection in prepare()


def test_a_projection_job_leaves_the_same_cached_map_as_compute(tmp_path):
    from workbench.map.projection import start_projection_job

    c, bad = _nan_collection(tmp_path)
    job = start_projection_job(c, sample=200, n_epochs=30)
    seen = []
    summary = job.wait(timeout=300, progress=lambda s, f: seen.append((s, f)))
    assert job.state == "done" and not job.process.is_alive() and job.done()
    stages = [s for s, _ in seen]
    assert stages[0] == "sample" and stages[-1] == "done" and "umap" in stages and "place" in stages
    order = [PROGRESS_ORDER.index(s) for s in stages]
    assert order == sorted(order)  # stages in order, as project reports them
    assert summary["rows"] == len(c) and summary["report"]["computed"] == len(c.shards)
    assert job.stage == "done" and job.fraction == 1.0
    # what compute (and `workbench map SRC`) would have left: read back, nothing fitted
    res = compute(workbench.open_collection(c.path), [ProjectionScorer(sample=200, n_epochs=30)])
    assert res.report["map_x"]["cached"] == len(c.shards) and res.report["map_x"]["computed"] == 0
    frame = res.collect()
    ref = project(c, sample=200, n_epochs=30)
    np.testing.assert_array_equal(frame.select("map_x", "map_y").fill_null(np.nan).to_numpy(), ref)
    assert job.result().equals(frame) and frame["map_x"].null_count() == len(bad)
    assert not job.cancel()  # nothing left to cancel


def test_a_projection_job_can_be_cancelled(demo_master, tmp_path):
    from workbench.map.projection import ProjectionCancelled, start_projection_job
    from workbench.scoring.scorecache import ScoreCache

    c = workbench.open_collection(demo_master)
    params = dict(sample=3000, n_epochs=2000)  # long enough to be cancelled mid-fit
    job = start_projection_job(c, cache_dir=tmp_path / "cache", **params)
    t0 = time.perf_counter()
    while not job.poll(0.5) and time.perf_counter() - t0 < 120:  # until the child reports
        assert job.state == "running"
    assert job.stage in ("sample", "umap")
    assert job.cancel(grace=0.5) and job.state == "cancelled" and not job.process.is_alive()
    with pytest.raises(ProjectionCancelled, match="cancelled"):
        job.wait()
    s = ProjectionScorer(**params)
    s.prepare(c)
    cache = ScoreCache(c, s.column, s.spec(), tmp_path / "cache")
    assert not any(cache.state(i) == "fresh" for i in range(len(c.shards)))
    assert not job.cancel()


def test_a_projection_job_checks_its_parameters_before_starting(tmp_path):
    from workbench.map.projection import start_projection_job

    c, _ = _nan_collection(tmp_path)
    with pytest.raises(WorkbenchError, match="sample"):
        start_projection_job(c, sample=1)
    with pytest.raises(WorkbenchError, match="progress"):
        start_projection_job(c, progress=print)
    with pytest.raises(TypeError):
        start_projection_job(c, colour="red")


PROGRESS_ORDER = ["sample", "umap", "place", "done"]


def test_placement_on_worker_processes_gives_the_same_bytes(tmp_path, monkeypatch):
    """With an engine, each shard is placed by its own task (the placer read from a file, never a
    pickle): the positions are byte-identical to placing here, exact or grouped search alike, and
    to placing in small chunks of uneven size (the search's scratch buffers reused between them)."""
    from workbench.engine import make_engine
    from workbench.map import placement

    c, bad = _nan_collection(tmp_path, rows=(1500, 1000, 500))
    for exact_max, precision in [(5000, "auto"), (100, "float32"), (100, "bfloat16")]:  # exact, then k-means lists
        monkeypatch.setattr(placement, "EXACT_PLACE_MAX", exact_max)
        monkeypatch.setattr(placement, "PLACE_PRECISION", precision)
        info = {}
        here = project(c, sample=1200, n_epochs=30, info=info)
        with make_engine("local", 2) as engine:
            there = project(c, sample=1200, n_epochs=30, engine=engine)
        assert np.array_equal(here, there, equal_nan=True) and np.isnan(there[bad]).all(), info["neighbours"]
        monkeypatch.setattr(placement, "PLACE_CHUNK_ROWS", 333)
        small = project(c, sample=1200, n_epochs=30)
        monkeypatch.setattr(placement, "PLACE_CHUNK_ROWS", 1 << 18)
        if precision == "float32":  # BLAS may round a product of another shape differently (documented)
            np.testing.assert_allclose(here, small, atol=1e-5)
        else:
            assert np.array_equal(here, small, equal_nan=True), info["neighbours"]
    assert info["neighbours"].startswith("grouped")
    assert not list(placement.Path(tmp_path).rglob(".placer-*"))  # the placer's file is removed
