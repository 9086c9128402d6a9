"""Clusters for the map: spherical k-means (real faiss), caption-word labels, stratified draws."""
import numpy as np
import polars as pl
import pytest

import workbench
from conftest import make_collection, make_parquet_only, unit_rows
from workbench.map.clusters import ClusterScorer, default_k, kmeans, label_clusters, stratified_sample
from workbench.demo.build import _NOUNS, load_ground_truth
from workbench.errors import NoEmbeddingsError, WorkbenchError
from workbench.scoring.compute import compute


@pytest.fixture(scope="module")
def demo_clusters(demo_master):
    c = workbench.open_collection(demo_master)
    info = {}
    ids, cent = kmeans(c, info=info)
    return c, ids, cent, info


def _nan_collection(tmp_path, rows=(300, 250, 150), dim=32):
    rng = np.random.default_rng(3)
    centres = unit_rows(5, dim, 11)
    arrays = []
    for n in rows:
        x = centres[rng.integers(0, 5, n)] + 0.3 * rng.standard_normal((n, dim)) / np.sqrt(dim)
        arrays.append((x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float16))
    arrays[0][5, 3] = np.nan
    arrays[1][0] = 0
    arrays[2][7, 0] = np.inf
    c = make_collection(tmp_path / "nan", arrays)
    return c, np.array([5, rows[0], rows[0] + rows[1] + 7])


def _all_unit_rows(c):
    return np.concatenate([ch.data for ch in c.iter_embeddings()]).astype(np.float64)


# -- k-means -------------------------------------------------------------------------------------------
def test_default_k():
    assert default_k(6000) == 19
    assert default_k(10) == 2 and default_k(0) == 2
    assert default_k(10**6) == 64 and default_k(5 * 10**9) == 64


def test_kmeans_ids_equal_a_brute_force_nearest_centroid(demo_clusters):
    c, ids, cent, info = demo_clusters
    k = default_k(len(c))
    assert ids.dtype == np.int32 and ids.shape == (len(c),)
    assert cent.dtype == np.float32 and cent.shape == (k, c.dim)
    np.testing.assert_allclose(np.linalg.norm(cent, axis=1), 1, atol=1e-4)
    assert ids.min() >= 0 and ids.max() < k and len(np.unique(ids)) == k
    s = _all_unit_rows(c) @ cent.astype(np.float64).T
    brute = np.argmax(s, axis=1)
    same = ids == brute
    assert same.mean() > 0.999
    # any disagreement is a float near-tie
    assert np.all(s[np.arange(len(c)), ids] >= s.max(axis=1) - 1e-5)
    assert info["k"] == k and sum(info["sizes"]) == len(c)


def test_kmeans_is_seeded_and_takes_k(demo_master):
    c = workbench.open_collection(demo_master)
    a, ca = kmeans(c, k=5, sample=3000, seed=3)
    b, cb = kmeans(c, k=5, sample=3000, seed=3)
    assert np.array_equal(a, b) and np.array_equal(ca, cb)
    assert ca.shape == (5, c.dim) and set(np.unique(a)) == set(range(5))


def test_kmeans_marks_invalid_rows_and_clamps_k(tmp_path):
    c, bad = _nan_collection(tmp_path)
    ids, cent = kmeans(c, k=5)
    assert np.all(ids[bad] == -1)
    good = np.setdiff1d(np.arange(len(c)), bad)
    assert np.all((ids[good] >= 0) & (ids[good] < 5))
    ids, cent = kmeans(c, k=50, sample=20)  # more centroids than sampled rows: k lowered
    assert len(cent) <= 20 and ids.max() < len(cent)


def test_cluster_scorer_is_cached_and_nulls_invalid_rows(tmp_path):
    c, bad = _nan_collection(tmp_path)
    res = compute(c, [ClusterScorer(k=5)])
    assert res.report["cluster"]["computed"] == len(c.shards)
    df = res.collect()
    assert df.schema["cluster"] == pl.Int32
    ids, _ = kmeans(c, k=5)
    assert np.array_equal(df["cluster"].fill_null(-1).to_numpy(), ids)
    assert df["cluster"].null_count() == len(bad)
    again = compute(workbench.open_collection(c.path), [ClusterScorer(k=5)])
    assert again.report["cluster"]["cached"] == len(c.shards) and again.report["cluster"]["computed"] == 0
    assert again.collect().equals(df)
    assert compute(c, [ClusterScorer(k=4)]).report["cluster"]["computed"] == len(c.shards)


def test_kmeans_bad_inputs_fail_before_any_work(tmp_path, demo_master):
    c = workbench.open_collection(demo_master)
    for kw, msg in [({"k": 0}, "k must"), ({"k": 2.0}, "k must"), ({"kind": "audio"}, "kind"),
                    ({"sample": 0}, "sample"), ({"niter": 0}, "niter"), ({"seed": -2}, "seed")]:
        with pytest.raises(WorkbenchError, match=msg):
            kmeans(c, **kw)
    with pytest.raises(NoEmbeddingsError):
        kmeans(workbench.open_collection(make_parquet_only(tmp_path / "meta")))
    with pytest.raises(WorkbenchError, match="k must"):
        compute(c, [ClusterScorer(k=0)], cache=False)


# -- labels --------------------------------------------------------------------------------------------
def test_labels_name_the_object_of_object_dominated_clusters(demo_clusters, demo_master):
    c, ids, _, _ = demo_clusters
    captions = c.metadata.select("caption").collect()["caption"]
    labels = label_clusters(ids, captions)
    assert set(labels) == set(np.unique(ids).tolist())
    gt = load_ground_truth(demo_master)
    first = gt["objects"].list.first().fill_null("").to_numpy()
    checked = 0
    for cl, label in labels.items():
        words = label.split(", ")
        assert 1 <= len(words) <= 3 and all(len(w) > 2 for w in words)
        objs, counts = np.unique(first[ids == cl], return_counts=True)
        obj, share = objs[np.argmax(counts)], counts.max() / counts.sum()
        if obj and share >= 0.9:
            nouns = {w for noun in _NOUNS[obj] for w in noun.split()} | set(obj.split())
            assert nouns & set(words), (cl, obj, label)
            checked += 1
    assert checked >= 5


def test_label_rules():
    clusters = np.array([0, 0, 0, 1, 1, 1, 1, 2, -1, 0])
    captions = [
        "The Cat on a mat 2019", "a cat and the ox", "cat, kitten!", "Red car in the city", "a red car",
        "car 4k wallpaper", None, "alone", "cat cat cat", "kitten photo",
    ]
    labels = label_clusters(clusters, captions, top=2)
    assert labels == {0: "cat, kitten", 1: "car, red", 2: ""}  # stopwords, digits, <= 2 chars gone; -1 ignored
    assert label_clusters(clusters, pl.Series(captions), top=1) == {0: "cat", 1: "car", 2: ""}
    assert label_clusters(clusters, np.array(captions, dtype=object), top=1)[1] == "car"
    # min_df: a word must appear in at least min_df of the cluster's captions
    assert label_clusters(clusters, captions, top=5, min_df=3) == {0: "cat", 1: "car", 2: ""}
    assert label_clusters(np.array([-1, -1]), ["a", "b"]) == {}
    with_nulls = pl.Series([0, 0, None, 1, 1], dtype=pl.Int32)  # ClusterScorer's column: null = invalid row
    assert label_clusters(with_nulls, ["cat", "cat", "cat", "dog", "dog"], top=1) == {0: "cat", 1: "dog"}
    with pytest.raises(WorkbenchError, match="aligned"):
        label_clusters(clusters, captions[:3])
    with pytest.raises(WorkbenchError, match="top"):
        label_clusters(clusters, captions, top=0)


def test_labels_of_a_million_captions_are_fast():
    import time

    rng = np.random.default_rng(0)
    vocab = np.array(["cat", "dog", "beach", "sunset", "vintage", "poster", "photo", "stock", "wedding", "dress",
                      "mountain", "lake", "pizza", "kitchen", "the", "with", "of", "a", "in", "2019"])
    words = vocab[rng.integers(0, len(vocab), (1_000_000, 8))]
    captions = pl.Series([" ".join(r) for r in words[:1000]] * 1000)
    clusters = rng.integers(0, 64, 1_000_000)
    t0 = time.perf_counter()
    labels = label_clusters(clusters, captions)
    assert time.perf_counter() - t0 < 10
    assert len(labels) == 64


# -- what to draw ---------------------------------------------------------------------------------------
def test_stratified_sample_keeps_everything_when_it_fits():
    cl = np.array([0, 1, -1, 1, 2, -1])
    assert np.array_equal(stratified_sample(cl, max_points=4), [0, 1, 3, 4])
    assert np.array_equal(stratified_sample(pl.Series([0, 1, None, 1, 2, None]), max_points=4), [0, 1, 3, 4])
    assert stratified_sample(cl, max_points=100).dtype == np.int64


def test_stratified_sample_is_proportional_with_a_floor_and_covers_every_cluster():
    rng = np.random.default_rng(0)
    sizes = [50_000, 20_000, 5_000, 300, 30, 7]
    cl = np.repeat(np.arange(len(sizes)), sizes)
    cl = cl[rng.permutation(len(cl))]
    cl[rng.choice(len(cl), 500, replace=False)] = -1
    s = stratified_sample(cl, max_points=4000, seed=1, min_per_cluster=50)
    assert len(s) == 4000 and np.all(np.diff(s) > 0)
    assert np.all(cl[s] >= 0)
    counts = np.bincount(cl[s], minlength=len(sizes))
    have = np.bincount(cl[cl >= 0], minlength=len(sizes))
    assert counts[4] == have[4] and counts[5] == have[5]  # small clusters: all their rows (< min_per_cluster)
    assert counts[3] >= 50
    assert counts[0] > counts[1] > counts[2] >= 50
    ratio = counts[:3] / have[:3]
    assert np.ptp(ratio) < 0.01  # the big ones proportional
    assert np.array_equal(s, stratified_sample(cl, max_points=4000, seed=1, min_per_cluster=50))
    assert not np.array_equal(s, stratified_sample(cl, max_points=4000, seed=2, min_per_cluster=50))


def test_stratified_sample_when_the_floors_do_not_fit():
    cl = np.repeat(np.arange(30), 100)
    s = stratified_sample(cl, max_points=300, min_per_cluster=50)
    assert len(s) == 300 and np.all(np.bincount(cl[s]) == 10)
    s = stratified_sample(cl, max_points=20, min_per_cluster=50)  # fewer points than clusters: the largest get one
    assert len(s) == 20 and len(np.unique(cl[s])) == 20
    with pytest.raises(WorkbenchError, match="max_points"):
        stratified_sample(cl, max_points=0)


# -- DataComp's image-based filter ----------------------------------------------------------------------
def test_reference_k():
    from workbench.map.clusters import reference_k

    assert reference_k(12_800_000) == 100_000 and reference_k(6000) == 46 and reference_k(10) == 2
    assert reference_k(10**10) == 100_000


def test_nearest_centroids():
    from workbench.map.clusters import nearest_centroids

    cent = np.eye(4, dtype=np.float32)
    ref = np.array([[2.0, 0.1, 0, 0], [0, 0, 0.1, 3.0], [0.9, 0, 0.2, 0]], np.float32)
    assert nearest_centroids(cent, ref).tolist() == [0, 3]


def test_reference_clusters_keep_the_clusters_nearest_the_reference(demo_master, tmp_path):
    """Reference = image embeddings of some cat rows: the kept clusters are exactly the nearest
    centroids of those rows, and cats are enriched among the kept rows."""
    from workbench.map.clusters import ReferenceClusterScorer, nearest_centroids

    c = workbench.open_collection(demo_master)
    truth = load_ground_truth(demo_master)
    is_cat = truth["objects"].list.contains("cat").to_numpy()
    ref_rows = np.nonzero(is_cat)[0][:20]
    np.save(tmp_path / "cats.npy", c.take_embeddings(ref_rows))
    s = ReferenceClusterScorer("imgclust_t", k=40, files=["cats.npy"], base=tmp_path)
    df = compute(c, [s], cache=False).collect()
    ids, cent = kmeans(c, k=40, sample=max(100_000, 40 * 40))
    assert np.array_equal(df["imgclust_t"].to_numpy(), ids)
    near = nearest_centroids(cent, c.take_embeddings(ref_rows))
    keep = df["imgclust_t_near"].to_numpy()
    assert np.array_equal(keep, np.isin(ids, near)) and s.info["near_clusters"] == len(near)
    assert keep[ref_rows].all()
    assert is_cat[keep].mean() > 3 * is_cat.mean()
    assert keep.sum() < len(c) / 4


def test_reference_clusters_from_prompts_and_their_cache(demo_world):
    from workbench.curation.recipe import Recipe
    from workbench.curation.apply import apply

    c = workbench.open_collection(demo_world)
    r = Recipe.from_dict({"rules": [{"image_clusters": ["a photo of a dog", "a dog"], "k": 30}]})
    sel = apply(c, r)
    truth = load_ground_truth(demo_world)
    dog = truth["objects"].list.contains("dog").to_numpy()
    assert 0 < sel.kept < len(c) and dog[sel.mask].mean() > 2 * dog.mean()
    again = apply(workbench.open_collection(demo_world), r)
    assert np.array_equal(again.mask, sel.mask) and list(again.scores.values())[0]["cached"] == len(c.shards)


def test_reference_clusters_bad_input(demo_world, tmp_path):
    from workbench.map.clusters import ReferenceClusterScorer
    from workbench.models.heads import ModelMismatchError

    c = workbench.open_collection(demo_world)
    np.save(tmp_path / "wrong.npy", np.ones((3, 7), np.float32))
    with pytest.raises(ModelMismatchError, match="7-d"):
        compute(c, [ReferenceClusterScorer("x", files=["wrong.npy"], base=tmp_path)], cache=False)
    with pytest.raises(WorkbenchError, match="need a reference"):
        compute(c, [ReferenceClusterScorer("x")])
    assert not (demo_world / ".workbench").exists()  # refused before any work
