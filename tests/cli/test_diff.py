"""``workbench diff`` and ``workbench apply --by-cluster``: the JSON against direct computations, the
sums, and the readable output."""
from __future__ import annotations

import json

import numpy as np

import workbench
from workbench import Workspace, open_collection
from workbench.cli.main import main
from workbench.curation.impact import collection_clusters
from workbench.curation.recipe import Recipe, preset
from workbench.io.schema import ROW

CUT = {"name": "cut", "rules": [{"column": "similarity", "min": 0.28}, {"column": "punsafe", "below": 0.5}]}


def _save(tmp_path, d) -> str:
    p = tmp_path / f"{d['name']}.yaml"
    Recipe.from_dict(d).save(p)
    return str(p)


def test_apply_by_cluster_json(demo_world, tmp_path, capsys):
    assert main(["apply", _save(tmp_path, CUT), str(demo_world), "--dry-run", "--json", "--by-cluster"]) == 0
    out = json.loads(capsys.readouterr().out)
    clusters = out["clusters"]
    assert sum(c["rows"] for c in clusters) == out["rows"] and sum(c["removed"] for c in clusters) == out["removed"]
    for i, rule in enumerate(out["rules"]):
        assert sum(c["rules"][i]["removed_alone"] for c in clusters) == rule["removed_alone"]
        assert all(c["rules"][i]["rule"] == rule["rule"] for c in clusters)
    assert len({c["cluster"] for c in clusters}) == len(clusters)
    for c in clusters:
        assert {"cluster", "label", "rows", "removed", "removed_share", "rules"} <= set(c)
        assert c["share_low"] <= c["removed_share"] <= c["share_high"]
    # every row in one cluster: the cluster sizes are those of the map's clusters, read independently
    c = open_collection(demo_world)
    rows = c.metadata.select(ROW).collect()[ROW].to_numpy()
    cl, labels = collection_clusters(c, rows[::-1])
    assert {x["cluster"]: x["rows"] for x in clusters} == {int(k): int(v) for k, v in zip(*np.unique(cl, return_counts=True))}
    assert {x["cluster"]: x["label"] for x in clusters} == labels
    # the same table as the workspace's
    t = Workspace(c, Recipe.from_dict(CUT)).cluster_impact()
    assert [x["cluster"] for x in clusters] == t["cluster"].to_list()
    assert [[r["removed_alone"] for r in x["rules"]] for x in clusters] == t["rules"].to_list()


def test_apply_by_cluster_table(demo_world, capsys):
    assert main(["apply", "laion2b-en", str(demo_world), "--dry-run", "--by-cluster"]) == 0
    text = capsys.readouterr().out
    assert "per map cluster" in text and "interval" in text


def test_diff_json_against_two_dry_runs(demo_world, tmp_path, capsys):
    a = _save(tmp_path, CUT)
    assert main(["diff", a, "laion2b-en", str(demo_world), "--json", "--sample", "4", "--seed", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    c = open_collection(demo_world)
    sa, sb = workbench.apply(c, Recipe.load(a)), workbench.apply(c, preset("laion2b-en"))
    assert (sa.rows == sb.rows).all()
    ka, kb = sa.mask, sb.mask
    want = {"both": ka & kb, "only_a": ka & ~kb, "only_b": ~ka & kb, "neither": ~ka & ~kb}
    for s, m in want.items():
        assert out[s] == int(m.sum()), s
        assert set(out["samples"][s]) <= set(sa.rows[m].tolist()) and len(out["samples"][s]) == min(4, int(m.sum()))
        assert sum(x[s] for x in out["clusters"]) == out[s]
    assert out["a"]["kept"] == sa.kept and out["b"]["kept"] == sb.kept and out["rows"] == len(sa.rows)
    caps = dict(zip(*c.metadata.select(ROW, "caption").collect().to_dict(as_series=False).values()))
    for s in want:
        assert out["captions"][s] == [caps[r] for r in out["samples"][s]]


def test_diff_table_and_errors(demo_world, tmp_path, capsys):
    assert main(["diff", "laion2b-en", "datacomp-basic", str(demo_world), "--sample", "2"]) == 0
    text = capsys.readouterr().out
    for phrase in ("kept by both", "kept by A only", "kept by B only", "kept by neither", "rules of A", "rules of B",
                   "sample kept by A only"):
        assert phrase in text, phrase
    assert main(["diff", "no-such-recipe", "laion2b-en", str(demo_world)]) == 2
    assert "no-such-recipe" in capsys.readouterr().err


def test_diff_without_embeddings_says_there_are_no_clusters(tmp_path, capsys):
    from conftest import make_parquet_only

    root = make_parquet_only(tmp_path / "p")
    assert main(["diff", "laion2b-en", "datacomp-basic", str(root), "--json"]) == 0
    cap = capsys.readouterr()
    out = json.loads(cap.out)
    assert out["rows"] == 10 and sum(out[s] for s in ("both", "only_a", "only_b", "neither")) == 10
    assert [c["cluster"] for c in out["clusters"]] == [-1] and out["clusters"][0]["rows"] == 10
    assert any("no per-cluster counts" in w for w in out["warnings"]) and "no per-cluster counts" in cap.err
    assert main(["apply", "laion2b-en", str(root), "--dry-run", "--by-cluster"]) == 2  # asked for clusters: refused
    assert "k-means needs image embeddings" in capsys.readouterr().err
