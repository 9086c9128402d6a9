"""Live counts: a threshold change gives the same counts as re-applying the recipe, without embeddings."""
import numpy as np
import polars as pl
import pytest

import workbench
from workbench.errors import RecipeError
from workbench.curation.live import Live
from workbench.curation.recipe import Recipe, evaluate
from workbench.curation.apply import apply


def frame(n=5000, seed=0):
    rng = np.random.default_rng(seed)
    sim = rng.normal(0.3, 0.05, n)
    sim[::97] = np.nan
    return pl.DataFrame({"row": np.arange(n), "similarity": pl.Series(sim).fill_nan(None),
                         "punsafe": rng.random(n).astype(np.float32),
                         "caption": rng.choice(["a cat", "dog", "a photo of a boat", None], n)})


def recipe():
    return Recipe.from_dict({"rules": [{"caption_length": {"min_chars": 4}}, {"column": "similarity", "min": 0.28},
                                       {"column": "punsafe", "below": 0.5}]})


def check_same(live: Live, f: pl.DataFrame):
    ref = evaluate(f, Recipe(list(live.recipe.rules)))
    got = live.counts()
    assert got["kept"] == ref.kept and got["removed"] == ref.removed and got["rows"] == len(f)
    assert [r["removed_alone"] for r in got["rules"]] == ref.counts()["removed_alone"].to_list()
    assert [r["removed_in_order"] for r in got["rules"]] == ref.counts()["removed_in_order"].to_list()
    sel = live.selection()
    assert np.array_equal(sel.reason, ref.reason) and np.array_equal(sel.overlaps, ref.overlaps)


@pytest.mark.parametrize("numba", [True, False])
def test_threshold_changes_match_a_full_reevaluation(numba, monkeypatch):
    import workbench.io.kernels as k

    if not numba:
        monkeypatch.setattr(k, "_tried", True)
        monkeypatch.setattr(k, "_kernels", None)
    f = frame()
    live = Live(f, recipe())
    check_same(live, f)
    for t in (0.2, 0.31, 0.5):
        live.set_bounds(1, min=t)
        check_same(live, f)
    live.set_bounds(2, below=0.1, min=0.01)
    check_same(live, f)
    assert live.recipe.rules[2].name == "punsafe>=0.01 & punsafe<0.1"
    live.set_rule(0, {"caption_length": {"min_chars": 6}})
    check_same(live, f)


def test_histogram_of_all_rows_and_of_rows_the_other_rules_keep():
    f = frame()
    live = Live(f, recipe())
    h = live.histogram(1)
    assert h["column"] == "similarity" and len(h["all"]) == 64 and len(h["edges"]) == 65
    sim = f["similarity"].to_numpy()
    ok = np.isfinite(sim)
    assert sum(h["all"]) == ok.sum()
    ref, _ = np.histogram(sim[ok], bins=np.asarray(h["edges"]))
    assert np.abs(np.asarray(h["all"]) - ref).sum() <= 2  # float edge rounding at most
    others = f.select((pl.col("caption").str.len_chars() >= 4) & (pl.col("punsafe") < 0.5)).to_series().fill_null(False).to_numpy()
    assert sum(h["kept_by_other_rules"]) == (ok & others).sum()
    live.set_bounds(1, min=0.35)  # the histogram does not depend on this rule's own threshold
    assert live.histogram(1)["kept_by_other_rules"] == h["kept_by_other_rules"]


def test_errors():
    live = Live(frame(), recipe())
    with pytest.raises(RecipeError, match="no threshold"):
        live.set_bounds(0, min=3)
    with pytest.raises(RecipeError, match="unknown bound"):
        live.set_bounds(1, least=3)
    with pytest.raises(RecipeError, match="not loaded"):
        live.set_rule(1, {"column": "aesthetic", "min": 5})


def test_from_collection_uses_cached_scores(demo_world):
    c = workbench.open_collection(demo_world)
    r = Recipe.from_dict({"rules": [{"prompt": "a watermark", "max": 0.2}, {"column": "similarity", "min": 0.28}]})
    sel = apply(c, r)
    live = Live.from_collection(c, Recipe.from_dict(r.to_dict()))
    assert live.counts()["kept"] == sel.kept
    live.set_bounds(0, max=0.15)
    r2 = Recipe.from_dict({"rules": [{"prompt": "a watermark", "max": 0.15}, {"column": "similarity", "min": 0.28}]})
    assert live.counts()["kept"] == apply(c, r2).kept
