"""Who a filter removes, per map cluster: the sums, one cluster per row, the interval that keeps small
clusters from being over-read, and a rule aimed at one cluster's topic landing on that cluster."""
from __future__ import annotations

from collections import Counter

import numpy as np
import polars as pl
import pytest

from workbench import Workspace, open_collection
from workbench.curation.impact import (NO_CLUSTER, NO_CLUSTER_LABEL, collection_clusters, impact_table,
                                       wilson_interval)
from workbench.curation.recipe import Recipe
from workbench.io.schema import ROW

RECIPE = {"name": "cut", "rules": [{"column": "similarity", "min": 0.28}, {"column": "punsafe", "below": 0.5}]}


@pytest.fixture
def ws(demo_world):
    return Workspace(open_collection(demo_world), Recipe.from_dict(RECIPE))


def _check_sums(t: pl.DataFrame, counts: dict) -> None:
    assert t["rows"].sum() == counts["rows"] and t["removed"].sum() == counts["removed"]
    per_rule = np.array(t["rules"].to_list()).sum(axis=0) if len(t) else []
    assert list(per_rule) == [r["removed_alone"] for r in counts["rules"]]
    assert t["cluster"].n_unique() == len(t)


def test_wilson_interval_matches_scipy_and_holds_the_share():
    from scipy.stats import binomtest

    rng = np.random.default_rng(0)
    n = rng.integers(1, 5000, 200)
    k = (rng.random(200) * (n + 1)).astype(int).clip(0, n)
    lo, hi = wilson_interval(k, n)
    for i in range(len(n)):
        ci = binomtest(int(k[i]), int(n[i])).proportion_ci(0.95, method="wilson")
        assert lo[i] == pytest.approx(ci.low, abs=1e-9) and hi[i] == pytest.approx(ci.high, abs=1e-9)
    assert np.all((lo <= k / n) & (k / n <= hi) & (lo >= 0) & (hi <= 1))
    lo0, hi1 = wilson_interval([0, 7], [7, 7])
    assert lo0[0] == 0.0 and hi1[1] == 1.0  # exact at the ends: a recipe removing nothing departs by exactly 0
    # more rows, narrower interval at the same share
    lo2, hi2 = wilson_interval([5, 500], [10, 1000])
    assert hi2[1] - lo2[1] < hi2[0] - lo2[0]


def test_sums_match_the_counts_and_every_row_is_in_one_cluster(ws):
    t = ws.cluster_impact()
    assert list(t.schema.items()) == [("cluster", pl.Int64), ("label", pl.Utf8), ("rows", pl.Int64),
                                      ("removed", pl.Int64), ("removed_share", pl.Float64), ("share_low", pl.Float64),
                                      ("share_high", pl.Float64), ("departure", pl.Float64), ("rules", pl.List(pl.Int64))]
    _check_sums(t, ws.counts())
    members = [ws.cluster_members(c) for c in t["cluster"].to_list()]
    every = np.concatenate(members)
    assert len(every) == len(np.unique(every)) == ws.counts()["rows"]  # each row in exactly one cluster
    assert [len(m) for m in members] == t["rows"].to_list()
    assert all((np.diff(m) > 0).all() for m in members)
    # sorted by |departure| descending, ties by cluster ascending
    key = list(zip((-t["departure"].abs()).to_list(), t["cluster"].to_list()))
    assert key == sorted(key)


def test_per_rule_counts_against_the_columns(ws):
    """Each cluster's removed and per-rule counts, recomputed from the score columns and the map's
    clusters read independently (the cluster cache through compute, joined on row)."""
    c = ws.collection
    t = ws.cluster_impact()
    meta = c.metadata.select(ROW, "similarity", "punsafe").collect()
    shuffled = meta.sample(fraction=1.0, shuffle=True, seed=3)
    cl, _ = collection_clusters(c, shuffled[ROW].to_numpy())  # aligned with the shuffled rows
    f_sim = ~(shuffled["similarity"] >= 0.28).fill_null(False).to_numpy()
    f_ps = ~(shuffled["punsafe"] < 0.5).fill_null(False).to_numpy()
    for r in t.iter_rows(named=True):
        inside = cl == r["cluster"]
        assert r["rows"] == inside.sum()
        assert r["removed"] == (inside & (f_sim | f_ps)).sum()
        assert r["rules"] == [int((inside & f_sim).sum()), int((inside & f_ps).sum())]
        assert r["removed_share"] == pytest.approx(r["removed"] / r["rows"])


def test_cluster_removed_is_the_clusters_removed_rows(ws):
    t = ws.cluster_impact()
    c0 = int(t["cluster"][0])
    rows = ws.cluster_removed(c0, limit=5)
    members = ws.cluster_members(c0)
    gone = members[~ws.kept_mask(members)]
    assert rows.tolist() == gone[:5].tolist()
    assert len(ws.cluster_removed(c0, limit=10_000)) == t.filter(pl.col("cluster") == c0)["removed"][0]


def test_a_rule_aimed_at_a_clusters_topic_hits_that_cluster_hardest(ws):
    labels = dict(zip(ws.cluster_impact()["cluster"].to_list(), ws.cluster_impact()["label"].to_list()))
    words = Counter(w for lab in labels.values() for w in lab.split(", ") if w)
    tried = 0
    for cluster, lab in sorted(labels.items()):
        word = lab.split(", ")[0]
        if not word or words[word] > 1:  # a word several labels share points at no single cluster
            continue
        ws.set_recipe(Recipe.from_dict({"name": word, "rules": [{"caption_keywords": [word]}]}))
        t = ws.cluster_impact()
        _check_sums(t, ws.counts())
        top = t.row(0, named=True)
        assert top["cluster"] == cluster and top["departure"] > 0, (word, top)
        assert top["removed_share"] == t["removed_share"].max()
        tried += 1
    assert tried >= 5


def test_small_clusters_are_not_over_read():
    """A 3-row cluster removed whole cannot be told from a 50% overall share; a 1,000-row cluster at 60%
    can: it sorts first, and the small one gets departure 0."""
    cl = np.repeat([0, 1, 2], [3, 1000, 2000])
    removed = np.zeros(len(cl), bool)
    removed[:3] = True                      # cluster 0: 3 of 3
    removed[3:3 + 600] = True               # cluster 1: 600 of 1,000
    removed[1003:1003 + 900] = True         # cluster 2: 900 of 2,000
    t = impact_table(cl, removed, [removed], {0: "tiny", 1: "big", 2: "rest"}, ["r"])
    by = {r["cluster"]: r for r in t.iter_rows(named=True)}
    overall = removed.mean()
    assert by[0]["removed_share"] == 1.0 and by[0]["share_low"] < overall and by[0]["departure"] == 0.0
    assert by[1]["departure"] == pytest.approx(by[1]["share_low"] - overall) and by[1]["departure"] > 0
    assert by[2]["departure"] == pytest.approx(by[2]["share_high"] - overall) and by[2]["departure"] < 0
    assert t["cluster"].to_list()[-1] == 0


def test_rows_without_a_cluster_count_in_cluster_minus_one():
    cl = np.array([0, np.nan, 1, 0, np.nan, 1, 1])
    removed = np.array([1, 1, 0, 0, 0, 1, 0], bool)
    t = impact_table(cl, removed, [removed], {0: "a", 1: "b"}, ["r"])
    by = {r["cluster"]: r for r in t.iter_rows(named=True)}
    assert by[NO_CLUSTER]["label"] == NO_CLUSTER_LABEL and by[NO_CLUSTER]["rows"] == 2 and by[NO_CLUSTER]["removed"] == 1
    assert t["rows"].sum() == len(cl) and t["removed"].sum() == removed.sum()


def test_a_recipe_removing_nothing_departs_nowhere(demo_world):
    ws = Workspace(open_collection(demo_world))
    t = ws.cluster_impact()
    assert (t["removed"] == 0).all() and (t["departure"] == 0).all() and t["rules"].to_list() == [[]] * len(t)
    assert t["cluster"].to_list() == sorted(t["cluster"].to_list())


def test_impact_follows_a_slider_move(ws):
    before = ws.cluster_impact()
    counts = ws.set_bounds(0, min=0.2)
    after = ws.cluster_impact()
    _check_sums(after, counts)
    assert after["removed"].sum() < before["removed"].sum()


@pytest.mark.parametrize("n_clusters,k", [(7, 3), (300, 14)])  # one counting pass; the per-rule fallback
def test_the_live_pattern_count_equals_the_per_rule_count(n_clusters, k):
    from workbench.curation.impact import cluster_index, pattern_fails, pattern_impact

    rng = np.random.default_rng(k)
    cl = rng.integers(-1, n_clusters, 20_000)
    packed = np.zeros(len(cl), np.uint16)
    for i in range(k):
        packed |= (rng.random(len(cl)) < 0.1).astype(np.uint16) << np.uint16(i)
    names = [f"r{i}" for i in range(k)]
    want = impact_table(cl, packed != 0, pattern_fails(packed, k), {}, names)
    got = pattern_impact(cluster_index(cl), packed, {}, k)
    assert got.equals(want)
    assert np.array(got["rules"].to_list()).sum(axis=0).tolist() == [int(((packed >> i) & 1).sum()) for i in range(k)]


def test_rows_without_a_valid_embedding_end_to_end(tmp_path, capsys):
    """NaN and zero embeddings get no k-means cluster: the workspace and `apply --by-cluster` count them in
    cluster -1, and the sums still equal the totals."""
    import json

    from conftest import make_collection, unit_rows
    from workbench.cli.main import main

    a, b = unit_rows(40, 16, 0), unit_rows(30, 16, 1)
    a[[3, 7]] = np.nan
    b[0] = 0
    c = make_collection(tmp_path / "c", [a.astype(np.float16), b.astype(np.float16)])
    recipe = {"name": "sim", "rules": [{"column": "similarity", "min": 0.3}]}
    ws = Workspace(c, Recipe.from_dict(recipe))
    t = ws.cluster_impact(k=3)
    _check_sums(t, ws.counts())
    assert sorted(ws.cluster_members(NO_CLUSTER).tolist()) == [3, 7, 40]
    assert t.filter(pl.col("cluster") == NO_CLUSTER)["label"].to_list() == [NO_CLUSTER_LABEL]
    path = tmp_path / "sim.yaml"
    Recipe.from_dict(recipe).save(path)
    assert main(["apply", str(path), str(c.path), "--dry-run", "--json", "--by-cluster"]) == 0
    out = json.loads(capsys.readouterr().out)
    by = {x["cluster"]: x for x in out["clusters"]}
    assert by[NO_CLUSTER]["rows"] == 3 and sum(x["rows"] for x in by.values()) == out["rows"] == 70
    assert sum(x["removed"] for x in by.values()) == out["removed"]
