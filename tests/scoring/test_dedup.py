"""Semantic near-duplicates: exact and clustered methods against a brute-force numpy reference."""
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

import workbench
from conftest import make_embeddings, write_npy
from workbench.scoring import clusterdedup, dedup, exactdedup
from workbench.scoring.dedup import DedupResult, components, recall, semantic_duplicates
from workbench.demo.build import build_demo_world, load_ground_truth
from workbench.errors import NoEmbeddingsError, WorkbenchError


# -- fixtures ------------------------------------------------------------------------------------
def _unit(x):
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def write_collection(root: Path, x: np.ndarray, rows: tuple[int, ...], dtype="float16") -> Path:
    """A LAION embedding folder (img_emb only) holding the rows of `x`, split into shards of `rows`."""
    assert sum(rows) == len(x)
    start = 0
    for i, n in enumerate(rows):
        write_npy(root / "img_emb" / f"img_emb_{i}.npy", x[start : start + n].astype(dtype))
        start += n
    return root


def planted(n=1500, dim=64, topics=None, seed=0, pairs=60, chains=10):
    """Random unit rows with planted near-duplicates at cosine ~0.95-0.99 and chains a~b~c (a !~ c at 0.9).

    Rows are placed so that many duplicates cross shard boundaries. Returns (x float32, chains list).
    With `topics`, rows gather around that many topic directions (like CLIP's clustered space).
    """
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((n, dim))
    if topics:
        centers = _unit(rng.standard_normal((topics, dim)))
        x = _unit(0.75 * centers[rng.integers(0, topics, n)] + 0.65 * noise / np.sqrt(dim))
    else:
        x = _unit(noise)
    idx = rng.permutation(n)
    k = 0
    for _ in range(pairs):  # b = a + a small perpendicular step: cosine 1/sqrt(1+eta^2) in [0.95, 0.995]
        a, b = idx[k], idx[k + 1]
        k += 2
        e = rng.standard_normal(dim)
        e -= (e @ x[a]) * x[a]
        eta = rng.uniform(0.1, 0.32)
        x[b] = _unit(x[a] + eta * e / np.linalg.norm(e))
    out_chains = []
    for _ in range(chains):  # in the plane of a and a random direction: a.b = b.c = 0.95, a.c = 0.805
        a, b, c = idx[k : k + 3]
        k += 3
        w = rng.standard_normal(dim)
        w = _unit(w - (w @ x[a]) * x[a])
        phi = np.arccos(0.95)
        x[b] = _unit(np.cos(phi) * x[a] + np.sin(phi) * w)
        x[c] = _unit(np.cos(2 * phi) * x[a] + np.sin(2 * phi) * w)
        out_chains.append((int(a), int(b), int(c)))
    return x, out_chains


def brute_force(c, threshold: float) -> tuple[np.ndarray, int]:
    """All pairs in numpy (float64 on the normalised rows) + scipy connected components -> smallest row id."""
    x = np.concatenate([ch.data for ch in c.iter_embeddings()]).astype(np.float64)
    s = x @ x.T
    i, j = np.nonzero(np.triu(s >= threshold, k=1))
    n = len(x)
    _, lab = connected_components(coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n)), directed=False)
    first = np.full(lab.max() + 1, n, np.int64)
    np.minimum.at(first, lab, np.arange(n))
    return first[lab], len(i)


@pytest.fixture(scope="module")
def planted_dir(tmp_path_factory):
    x, chains = planted()
    root = write_collection(tmp_path_factory.mktemp("dedup") / "planted", x, rows=(400, 350, 500, 250))
    return root, chains


# -- components ----------------------------------------------------------------------------------
def test_components_unit_cases():
    assert components([], [], 0).tolist() == []
    assert components([], [], 4).tolist() == [0, 1, 2, 3]
    assert components([3, 2, 1], [2, 1, 0], 5).tolist() == [0, 0, 0, 0, 4]  # a reversed chain
    assert components([4, 4, 1], [1, 4, 3], 6).tolist() == [0, 1, 2, 1, 1, 5]  # self-loop, j < i
    assert components([5, 5, 5, 2], [6, 7, 2, 5], 8).tolist() == [0, 1, 2, 3, 4, 2, 2, 2]  # star + repeated pair
    assert components(np.array([9, 0]), np.array([8, 1]), 10).tolist() == [0, 0, 2, 3, 4, 5, 6, 7, 8, 8]
    out = components([1], [2], 3)
    assert out.dtype == np.int64
    with pytest.raises(WorkbenchError, match="0..2"):
        components([0], [3], 3)
    with pytest.raises(WorkbenchError, match="differ in length"):
        components([0, 1], [1], 3)


def test_components_long_chain_and_random_graph_match_scipy():
    n = 5000
    perm = np.random.default_rng(1).permutation(n)  # one path visiting every row in random order
    assert np.all(components(perm[:-1], perm[1:], n) == 0)
    rng = np.random.default_rng(2)
    i, j = rng.integers(0, n, 4000), rng.integers(0, n, 4000)
    _, lab = connected_components(coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n)), directed=False)
    first = np.full(lab.max() + 1, n)
    np.minimum.at(first, lab, np.arange(n))
    np.testing.assert_array_equal(components(i, j, n), first[lab])


def test_union_find_in_small_batches_matches_one_batch():
    rng = np.random.default_rng(3)
    n = 3000
    i, j = rng.integers(0, n, 2500), rng.integers(0, n, 2500)
    uf = dedup._UnionFind(n, buffer=7)  # folded into the forest every few pairs
    for k in range(0, len(i), 5):
        uf.add(i[k : k + 5], j[k : k + 5])
    np.testing.assert_array_equal(uf.labels(), components(i, j, n))


# -- exact ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("threshold", [0.9, 0.94])
def test_exact_equals_brute_force(planted_dir, threshold):
    root, chains = planted_dir
    c = workbench.open_collection(root)
    want, npairs = brute_force(c, threshold)
    got = semantic_duplicates(c, threshold, method="exact", device="cpu")
    assert isinstance(got, DedupResult) and got.method == "exact" and got.threshold == threshold
    np.testing.assert_array_equal(got.representative, want)
    assert got.pairs == npairs and npairs >= 60
    assert got.keep.tolist() == (want == np.arange(len(c))).tolist()
    assert got.duplicates == int((want != np.arange(len(c))).sum())
    crossing = [r for r in np.flatnonzero(~got.keep) if c.shard_of([r])[0] != c.shard_of([got.representative[r]])[0]]
    assert len(crossing) >= 20  # duplicates across shard boundaries are joined
    for a, b, cc in chains:  # a~b, b~c, a !~ c: one component, kept = its smallest row
        assert len({got.representative[a], got.representative[b], got.representative[cc]}) == 1
        assert got.representative[a] == min(a, b, cc)


def test_exact_chunks_and_tiles_do_not_matter(planted_dir, monkeypatch):
    root, _ = planted_dir
    c = workbench.open_collection(root)
    whole = semantic_duplicates(c, 0.9, method="exact", device="cpu")
    monkeypatch.setattr(exactdedup, "TILE_ROWS", 100)
    small = semantic_duplicates(c, 0.9, method="exact", chunk_rows=111, device="cpu", progress=True)
    np.testing.assert_array_equal(small.representative, whole.representative)
    assert small.pairs == whole.pairs and small.params["chunks"] == 4 + 4 + 5 + 3 and small.params["tile_rows"] == 100


def test_exact_near_threshold_pairs_are_decided_in_float64(tmp_path):
    """Hundreds of pairs within +-0.03 of the threshold: the fast (bfloat16) prefilter must not decide them."""
    rng = np.random.default_rng(11)
    dim, t = 64, 0.94
    x = _unit(rng.standard_normal((1200, dim)))
    for k in range(0, 800, 2):
        a, b = k, k + 1
        w = rng.standard_normal(dim)
        w = _unit(w - (w @ x[a]) * x[a])
        cos = rng.uniform(t - 0.03, t + 0.03)
        x[b] = _unit(cos * x[a] + np.sqrt(1 - cos**2) * w)
    x = x[rng.permutation(len(x))]
    c = workbench.open_collection(write_collection(tmp_path / "near", x, rows=(500, 700), dtype="float32"))
    want, npairs = brute_force(c, t)
    got = semantic_duplicates(c, t, method="exact", device="cpu")
    np.testing.assert_array_equal(got.representative, want)
    assert got.pairs == npairs and 150 < npairs < 250


def test_dense_groups_are_counted_in_bulk(tmp_path, monkeypatch):
    """1,500 near-copies of one row (1.1M pairs) and 400 of another: counted exactly, joined without listing."""
    rng = np.random.default_rng(4)
    dim = 32
    x = _unit(rng.standard_normal((2600, dim)))
    x[:1500] = _unit(x[0] + 0.02 * rng.standard_normal((1500, dim)))
    x[1500:1900] = _unit(x[1500] + 0.02 * rng.standard_normal((400, dim)))
    x = x[rng.permutation(len(x))]
    c = workbench.open_collection(write_collection(tmp_path / "dense", x, rows=(1300, 1300), dtype="float32"))
    want, npairs = brute_force(c, 0.9)
    for method in ("exact", "clustered"):
        got = semantic_duplicates(c, 0.9, method=method, clusters=4, device="cpu")
        np.testing.assert_array_equal(got.representative, want)
        assert got.pairs == npairs and npairs >= 1500 * 1499 // 2
        assert got.params["dense_tiles"] >= 1
    monkeypatch.setattr(exactdedup, "MAX_PROPAGATION", 0)  # label propagation never converges: pairs listed instead
    listed = semantic_duplicates(c, 0.9, method="exact", device="cpu")
    np.testing.assert_array_equal(listed.representative, want)
    assert listed.pairs == npairs and listed.params["dense_tiles"] == 0


def test_prefilter_code_paths_agree(planted_dir, monkeypatch):
    """bfloat16 bits scanned in numpy (CPUs with bf16), float32 in numpy, and the GPU path (torch
    scans, hit rows copied to the host; run here on CPU tensors) give the same pairs."""
    c = workbench.open_collection(planted_dir[0])
    runs = [semantic_duplicates(c, 0.9, method=m, clusters=6, device="cpu") for m in ("exact", "clustered")]
    monkeypatch.setattr(exactdedup, "_fast_dtype", lambda torch, device: torch.float32)
    f32 = [semantic_duplicates(c, 0.9, method=m, clusters=6, device="cpu") for m in ("exact", "clustered")]
    assert f32[0].params["prefilter"] == "float32"
    init = dedup._Search.__init__

    def gpu_like(self, threshold, device):
        init(self, threshold, device)
        self.cpu = self.bits = False

    monkeypatch.setattr(dedup._Search, "__init__", gpu_like)
    gpu = [semantic_duplicates(c, 0.9, method=m, clusters=6, device="cpu") for m in ("exact", "clustered")]
    for a, b, g in zip(runs, f32, gpu):
        np.testing.assert_array_equal(a.representative, b.representative)
        np.testing.assert_array_equal(a.representative, g.representative)
        assert a.pairs == b.pairs == g.pairs


def test_auto_picks_exact_for_small_collections(planted_dir):
    c = workbench.open_collection(planted_dir[0])
    r = semantic_duplicates(c)  # defaults: 0.94, image, auto
    assert r.method == "exact" and r.params["method_asked"] == "auto" and r.params["kind"] == "image"
    assert r.params["rows"] == len(c) and r.params["fingerprint"] == c.fingerprint
    assert "exact" in repr(r) and f"{r.duplicates:,} duplicates" in repr(r)


# -- threshold edge and invalid rows ---------------------------------------------------------------
def _edge_dir(root: Path) -> Path:
    """Dyadic rows (every entry +-0.25, dim 16): unit norm and dot products exact in fp16/float32."""
    base = np.full(16, 0.25)
    r1 = base.copy()
    r1[0] = -0.25  # base . r1 = 15/16 - 1/16 = 0.875 exactly
    r2 = base.copy()
    r2[1:4] = -0.25  # base . r2 = 0.625, r1 . r2 = 0.5
    x = np.stack([r2, base, r2 * -1, r1])  # rows 1 and 3 are the pair, in different shards
    return write_collection(root, x, rows=(2, 2))


@pytest.mark.parametrize("method", ["exact", "clustered"])
def test_threshold_is_inclusive(tmp_path, method):
    c = workbench.open_collection(_edge_dir(tmp_path / "edge"))
    kw = dict(method=method, clusters=1, device="cpu") if method == "clustered" else dict(method=method, device="cpu")
    at = semantic_duplicates(c, 0.875, **kw)
    assert at.representative.tolist() == [0, 1, 2, 1] and at.pairs == 1
    above = semantic_duplicates(c, float(np.nextafter(0.875, 1.0)), **kw)  # a hair above, even in float64
    assert above.representative.tolist() == [0, 1, 2, 3] and above.pairs == 0
    assert semantic_duplicates(c, 0.625, **kw).representative.tolist() == [0, 0, 2, 0]


@pytest.mark.parametrize("method", ["exact", "clustered"])
def test_invalid_rows_are_never_duplicates(tmp_path, method):
    x, _ = planted(n=300, dim=32, pairs=20, chains=0, seed=5)
    x = x.astype(np.float32)
    bad = [3, 4, 150, 151, 298]
    x[3] = x[4] = 0  # two zero rows (identical)
    x[150] = x[151] = np.nan  # two NaN rows (identical)
    x[298] = x[299].copy()
    x[298, 5] = np.inf  # a copy of a valid row, spoiled by one inf
    c = workbench.open_collection(write_collection(tmp_path / "bad", x, rows=(100, 200), dtype="float32"))
    kw = dict(clusters=4) if method == "clustered" else {}
    r = semantic_duplicates(c, 1e-6, method=method, device="cpu", **kw)  # a threshold nearly everything passes
    assert r.representative[bad].tolist() == bad and r.keep[bad].all()
    assert np.flatnonzero(np.isin(r.representative, bad)).tolist() == bad  # no valid row joined an invalid one
    assert r.duplicates > 100  # while valid rows did join (nearly everything passes 1e-6)
    r = semantic_duplicates(c, 0.94, method=method, device="cpu", **kw)
    assert r.keep[bad].all() and r.keep[299] and r.duplicates >= 15


# -- clustered -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def topics_dir(tmp_path_factory):
    x, chains = planted(n=4000, dim=64, topics=40, pairs=200, chains=20, seed=7)
    return write_collection(tmp_path_factory.mktemp("dedup") / "topics", x, rows=(1000, 1200, 800, 1000)), chains


def test_clustered_recall_against_exact(topics_dir):
    root, chains = topics_dir
    c = workbench.open_collection(root)
    exact = semantic_duplicates(c, 0.94, method="exact", device="cpu")
    assert exact.duplicates >= 200
    got = semantic_duplicates(c, 0.94, method="clustered", device="cpu", seed=1)
    assert got.method == "clustered" and got.params["clusters"] == 63 and got.params["probe"] == 2
    assert got.params["largest_cluster"] >= 2 * 4000 / 63  # every row sits in 2 clusters: the largest >= the mean
    assert recall(got, exact) >= 0.95
    assert recall(exact, exact) == 1.0
    # never a false merge: every pair the clustered method joins, exact joins too
    assert np.all(exact.representative[got.representative] == exact.representative)
    assert got.pairs <= _pairs_inside(got, c, 0.94) <= exact.pairs  # each pair counted at most once
    again = semantic_duplicates(c, 0.94, method="clustered", device="cpu", seed=1)  # same seed: same answer
    np.testing.assert_array_equal(again.representative, got.representative)
    assert again.pairs == got.pairs


def _pairs_inside(result, c, threshold):
    """Above-threshold pairs whose rows `result` put in one component: an upper bound of result.pairs."""
    x = np.concatenate([ch.data for ch in c.iter_embeddings()]).astype(np.float64)
    i, j = np.nonzero(np.triu(x @ x.T >= threshold, k=1))
    return int(np.count_nonzero(result.representative[i] == result.representative[j]))


def test_clustered_splits_large_clusters(topics_dir, monkeypatch):
    root, _ = topics_dir
    c = workbench.open_collection(root)
    exact = semantic_duplicates(c, 0.94, method="exact", device="cpu")
    monkeypatch.setattr(clusterdedup, "SPLIT_MIN_ROWS", 32)  # split anything above the mean cluster (and 32 rows)
    monkeypatch.setattr(clusterdedup, "SPLIT_FACTOR", 1)
    got = semantic_duplicates(c, 0.94, method="clustered", clusters=8, device="cpu")
    assert got.params["split_clusters"] >= 2 and got.params["largest_cluster"] > got.params["split_at"]
    assert recall(got, exact) >= 0.9
    assert np.all(exact.representative[got.representative] == exact.representative)  # no false merge
    assert got.pairs <= _pairs_inside(got, c, 0.94)  # each pair counted at most once
    monkeypatch.setattr(clusterdedup, "MAX_SPLIT_DEPTH", 1)
    one = semantic_duplicates(c, 0.94, method="clustered", clusters=8, device="cpu")
    assert one.params["split_clusters"] >= 2 and recall(one, exact) >= 0.9


def test_clustered_with_one_cluster_is_exact(topics_dir):
    c = workbench.open_collection(topics_dir[0])
    exact = semantic_duplicates(c, 0.9, method="exact", device="cpu")
    one = semantic_duplicates(c, 0.9, method="clustered", clusters=1, probe=3, device="cpu")
    assert one.params["probe"] == 1
    np.testing.assert_array_equal(one.representative, exact.representative)
    assert one.pairs == exact.pairs


def test_clustered_counts_each_pair_once(planted_dir):
    c = workbench.open_collection(planted_dir[0])
    exact = semantic_duplicates(c, 0.9, method="exact", device="cpu")
    many = semantic_duplicates(c, 0.9, method="clustered", clusters=3, probe=3, device="cpu")  # every row in all 3
    np.testing.assert_array_equal(many.representative, exact.representative)
    assert many.pairs == exact.pairs


def test_members_groups_rows_by_cluster_in_blocks():
    rng = np.random.default_rng(9)
    assign = rng.integers(-1, 7, (1000, 3)).astype(np.int32)
    rows, bounds = dedup._members(assign, 7, chunk_rows=64)
    for cl in range(7):
        want = np.repeat(np.arange(1000), (assign == cl).sum(axis=1))  # rows holding cl, ascending
        assert rows[bounds[cl] : bounds[cl + 1]].tolist() == want.tolist()
    assert bounds[-1] == np.count_nonzero(assign >= 0)


def test_recall_definition():
    ex = DedupResult(np.array([0, 0, 0, 3, 3, 5]), 0.9, "exact", 3, {})
    assert recall(ex, ex) == 1.0
    approx = DedupResult(np.array([0, 1, 1, 3, 3, 5]), 0.9, "clustered", 2, {})  # found 1~2 and 3~4, not 0~1
    assert recall(approx, ex) == pytest.approx(2 / 3)
    none = DedupResult(np.arange(6), 0.9, "clustered", 0, {})
    assert recall(none, ex) == 0.0 and recall(ex, none) == 1.0
    assert ex.duplicates == 3 and ex.groups == 2 and none.groups == 0
    with pytest.raises(WorkbenchError, match="different row counts"):
        recall(none, DedupResult(np.arange(5), 0.9, "exact", 0, {}))


# -- demo world ------------------------------------------------------------------------------------
def test_demo_world_duplicate_groups_found(tmp_path):
    """The demo plants near-duplicates as `normalise(source + eta * jitter)`, eta in [0.08, 0.25]
    (cosine >= 0.968 to the source) and exact copies, some across shards; unrelated rows stay below
    ~0.84. So at 0.94 the ground truth is fully separable: exact must reproduce it row for row
    (every copy joined with its source, nothing else joined: 100%), clustered must find >= 95% of it
    and join nothing wrong."""
    world = build_demo_world(tmp_path / "w", rows=3000, seed=0, rows_per_shard=1000, dim=128)
    gt = load_ground_truth(world)
    group, dup_of = gt["dup_group"].to_numpy(), gt["dup_of"].to_numpy()
    rows = np.arange(len(gt))
    copies = np.flatnonzero(dup_of >= 0)
    assert len(copies) >= 30 and np.any(copies // 1000 != dup_of[copies] // 1000)  # some cross shards
    want = np.where(group >= 0, group, rows)  # a group's id is its source: the smallest row
    c = workbench.open_collection(world)
    exact = semantic_duplicates(c, 0.94, device="cpu")
    assert exact.method == "exact"
    np.testing.assert_array_equal(exact.representative, want)
    assert exact.duplicates == len(copies)
    truth = DedupResult(want, 0.94, "exact", 0, {})
    clus = semantic_duplicates(c, 0.94, method="clustered", device="cpu")
    assert recall(clus, truth) >= 0.95
    assert np.all(want[clus.representative] == want)  # precision 100%
    text = semantic_duplicates(c, 0.99, kind="text", device="cpu")  # exact copies share the caption
    assert text.params["kind"] == "text" and not text.keep[gt.filter(pl.col("exact_dup"))["row"].to_numpy()].any()


# -- validation ----------------------------------------------------------------------------------------
def test_arguments_are_checked_before_work(tmp_path):
    c = workbench.open_collection(make_embeddings(tmp_path / "e", text=False))
    for bad in (0, -0.5, 1.01, float("nan"), "high", None, True):
        with pytest.raises(WorkbenchError, match="threshold must be"):
            semantic_duplicates(c, bad)
    with pytest.raises(WorkbenchError, match="kind must be one of"):
        semantic_duplicates(c, kind="audio")
    with pytest.raises(NoEmbeddingsError, match="no text embeddings"):
        semantic_duplicates(c, kind="text")
    with pytest.raises(WorkbenchError, match="method must be one of"):
        semantic_duplicates(c, method="fast")
    with pytest.raises(WorkbenchError, match="probe must be an integer >= 1"):
        semantic_duplicates(c, probe=0)
    with pytest.raises(WorkbenchError, match="chunk_rows must be"):
        semantic_duplicates(c, chunk_rows=0)
    with pytest.raises(WorkbenchError, match="clusters must be"):
        semantic_duplicates(c, clusters=0)
    with pytest.raises(WorkbenchError, match="device must be"):
        semantic_duplicates(c, device="tpu")
    r = semantic_duplicates(c, 1.0, device="cpu")
    assert len(r) == 15 and r.keep.all() and r.pairs == 0


def test_device_auto_falls_back_to_cpu():
    import torch

    assert dedup._resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(WorkbenchError, match="no CUDA device"):
            dedup._resolve_device("cuda")
