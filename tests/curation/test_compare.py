"""Recipe against recipe: the four sets against two independent evaluations, per cluster sums, the
samples, and the workspace's live recipe left alone."""
from __future__ import annotations

import numpy as np
import polars as pl
import pytest

import workbench
from workbench import Workspace, open_collection
from workbench.curation.compare import SETS, _aligned, compare_masks, compare_recipes, resolve_recipe
from workbench.curation.recipe import Recipe, evaluate, preset
from workbench.errors import WorkbenchError
from workbench.io.schema import ROW

A = {"name": "a", "rules": [{"column": "similarity", "min": 0.28}, {"column": "punsafe", "below": 0.5}]}


def _direct(c, a, b):
    """The four sets from two separate recipe evaluations (workbench.apply), keyed by row id."""
    sa, sb = workbench.apply(c, resolve_recipe(a)), workbench.apply(c, resolve_recipe(b))
    ka = dict(zip(sa.rows.tolist(), sa.mask.tolist()))
    kb = dict(zip(sb.rows.tolist(), sb.mask.tolist()))
    assert ka.keys() == kb.keys()
    sets = {"both": set(), "only_a": set(), "only_b": set(), "neither": set()}
    for r in ka:
        sets[{(True, True): "both", (True, False): "only_a", (False, True): "only_b", (False, False): "neither"}[
            (ka[r], kb[r])]].add(r)
    return sets, sa, sb


def _check(out: dict, sets: dict, sample: int) -> None:
    assert out["rows"] == sum(len(s) for s in sets.values())
    for s in SETS:
        assert out[s] == len(sets[s]), s
        got = out["samples"][s]
        assert got == sorted(got) and len(got) == min(sample, len(sets[s])) and set(got) <= sets[s], s
        assert sum(cl[s] for cl in out["clusters"]) == out[s]
    assert sum(cl["rows"] for cl in out["clusters"]) == out["rows"]
    assert [cl["cluster"] for cl in out["clusters"]] == sorted({cl["cluster"] for cl in out["clusters"]})
    for cl in out["clusters"]:
        assert cl["rows"] == sum(cl[s] for s in SETS)


@pytest.mark.parametrize("other", ["laion2b-en", "datacomp-basic"])
def test_workspace_compare_against_two_direct_evaluations(demo_world, other):
    c = open_collection(demo_world)
    ws = Workspace(c, Recipe.from_dict(A))
    before, recipe_before = ws.counts(), ws.recipe.to_dict()
    out = ws.compare(other, sample=7, seed=1)
    sets, sa, sb = _direct(c, A, other)
    _check(out, sets, 7)
    assert out["only_a"] > 0 and out["only_b"] > 0  # the two recipes do differ here
    assert out["a"]["rules"] == sa.counts().to_dicts() and out["a"]["kept"] == sa.kept
    assert out["b"]["rules"] == sb.counts().to_dicts() and out["b"]["kept"] == sb.kept
    assert out["b"]["recipe"] == preset(other).name
    # the live recipe and counts are as they were; B's columns joined the frame
    assert ws.counts() == before and ws.recipe.to_dict() == recipe_before
    # the same seed, the same samples; another seed, others
    assert ws.compare(other, sample=7, seed=1)["samples"] == out["samples"]
    assert ws.compare(other, sample=7, seed=2)["samples"] != out["samples"]


def test_the_other_recipe_in_any_form(demo_world, tmp_path):
    c = open_collection(demo_world)
    ws = Workspace(c, Recipe.from_dict(A))
    b = {"name": "b", "rules": [{"column": "similarity", "min": 0.25}, {"caption_length": {"min_chars": 10}}]}
    path = tmp_path / "b.yaml"
    Recipe.from_dict(b).save(path)
    outs = [ws.compare(x) for x in (b, Recipe.from_dict(b), str(path), path)]
    assert all(o == outs[0] for o in outs)
    _check(outs[0], _direct(c, A, b)[0], 12)
    with pytest.raises(WorkbenchError, match="not a preset"):
        ws.compare("no-such-recipe")


def test_compare_recipes_over_a_collection_matches_the_workspace(demo_world):
    c = open_collection(demo_world)
    out = compare_recipes(c, A, "laion2b-en", sample=5, seed=4)
    ws_out = Workspace(c, Recipe.from_dict(A)).compare("laion2b-en", sample=5, seed=4)
    for k in ("rows", *SETS, "clusters", "samples"):
        assert out[k] == ws_out[k], k
    _check(out, _direct(c, A, "laion2b-en")[0], 5)
    caps = c.metadata.select(ROW, "caption").collect()
    by_row = dict(zip(caps[ROW].to_list(), caps["caption"].to_list()))
    for s in SETS:
        assert out["captions"][s] == [by_row[r] for r in out["samples"][s]]


def test_a_selection_in_shuffled_order_is_aligned_by_row_id(demo_world):
    c = open_collection(demo_world)
    frame = c.metadata.select(ROW, "similarity", "punsafe").collect()
    recipe = Recipe.from_dict(A)
    sel = evaluate(frame.sample(fraction=1.0, shuffle=True, seed=5), recipe)
    assert not (np.diff(sel.rows) > 0).all()
    rows = np.sort(frame[ROW].to_numpy())
    ref = evaluate(frame, recipe)
    assert (_aligned(rows, sel) == ref.mask).all()


def test_compare_masks_partitions_and_refuses_misaligned_input():
    rng = np.random.default_rng(0)
    a, b = rng.random(500) < 0.6, rng.random(500) < 0.4
    rows = rng.permutation(500).astype(np.int64)
    cl = rng.integers(-1, 4, 500)
    out = compare_masks(a, b, rows, cl, {0: "x"}, sample=3)
    assert out["both"] == (a & b).sum() and out["neither"] == (~a & ~b).sum()
    assert set(out["samples"]["only_a"]) <= set(rows[a & ~b].tolist())
    assert [x["cluster"] for x in out["clusters"]] == [-1, 0, 1, 2, 3]
    with pytest.raises(WorkbenchError, match="aligned"):
        compare_masks(a, b[:-1], rows, cl, {})
    assert pl.DataFrame(out["clusters"])["rows"].sum() == 500
