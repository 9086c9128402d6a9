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


def _tile_frame(n, seed, dtype):
    rng = np.random.default_rng(seed)
    v = np.round(rng.normal(0.3, 0.05, n), 3)  # ties: many rows share a value (and a bin edge)
    v[rng.random(n) < 0.05] = np.nan
    v[:3] = [np.inf, -np.inf, 0.3]
    w = rng.beta(0.3, 8, n)  # skewed: most rows in a few bins
    return pl.DataFrame({"row": rng.permutation(n), "similarity": pl.Series(v.astype(dtype)).fill_nan(None),
                         "punsafe": w.astype(np.float32), "n": rng.integers(0, 50, n)})


@pytest.mark.parametrize("numba", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_dragged_slider_answered_from_its_tile_matches_a_full_reevaluation(numba, dtype, monkeypatch):
    """Counts from the slider tile (any row count: tile_rows=0) equal re-evaluating the recipe, for
    bounds on values, between values, on bin edges, outside the data, crossed, and absent."""
    import workbench.curation.tiles as tiles
    import workbench.io.kernels as k

    if not numba:
        monkeypatch.setattr(k, "_tried", True)
        monkeypatch.setattr(k, "_kernels", None)
    monkeypatch.setattr(tiles, "CHUNK_ROWS", 2_000)  # 8 build chunks: rows of a bin from each, in row order
    f = _tile_frame(20_000, 1, dtype)
    rec = Recipe.from_dict({"rules": [{"column": "n", "min": 3}, {"column": "similarity", "min": 0.28},
                                      {"column": "punsafe", "below": 0.05}, {"column": "similarity", "max": 0.4}]})
    tiled, plain = Live(f, rec, tile_rows=0), Live(f, rec, tile_rows=10**12)
    vals = f["similarity"].drop_nulls().to_numpy()
    cases = [{"min": float(t)} for t in (0.3, 0.2999, 0.25, -1.0, 2.0, float(np.quantile(vals[np.isfinite(vals)], 0.5)))]
    cases += [{"above": 0.3}, {"min": 0.3, "max": 0.3}, {"min": 0.35, "max": 0.25}, {"above": 0.28, "below": 0.32},
              {"max": 0.31}, {"below": 0.31}, {"min": float(np.float32(0.1) + 0.0)}]
    for rule, bounds in [(1, b) for b in cases] + [(2, {"below": t}) for t in (0.0, 0.01, 0.05, 0.3)] + \
                        [(1, {"min": 0.29})]:
        for live in (tiled, plain):
            live.set_bounds(rule, **bounds)
        got, ref_live = tiled.counts(histogram_of=rule), plain.counts(histogram_of=rule)
        assert tiled._tile is not None and tiled._tile.index == rule and tiled._pending is not None
        ref = evaluate(f, Recipe(list(tiled.recipe.rules)))
        assert got["kept"] == ref.kept, (rule, bounds)
        assert [r["removed_alone"] for r in got["rules"]] == ref.counts()["removed_alone"].to_list(), (rule, bounds)
        assert [r["removed_in_order"] for r in got["rules"]] == ref.counts()["removed_in_order"].to_list()
        assert got == ref_live  # the histogram too
    sel = tiled.selection()  # reading the patterns writes the dragged rule's bit
    ref = evaluate(f.sort("row"), Recipe(list(tiled.recipe.rules)))
    assert np.array_equal(sel.reason, ref.reason) and np.array_equal(tiled.packed, plain.packed)
    tiled.set_rule(0, {"column": "n", "min": 10})
    plain.set_rule(0, {"column": "n", "min": 10})
    tiled.set_bounds(1, min=0.31)
    plain.set_bounds(1, min=0.31)
    assert tiled.counts(histogram_of=1) == plain.counts(histogram_of=1)


def test_the_tile_memory_stays_within_its_budget():
    from workbench.curation.tiles import SliderTile

    n = 200_000
    f = _tile_frame(n, 2, np.float32)
    live = Live(f, Recipe.from_dict({"rules": [{"column": "similarity", "min": 0.3}, {"column": "punsafe", "below": 0.1}]}),
                tile_rows=0)
    live.set_bounds(0, min=0.31)
    tile = live._tile
    per_row = tile.sv.nbytes + tile.so.nbytes + tile.rid.nbytes  # 4 value + 2 others pattern + 4 position
    assert isinstance(tile, SliderTile) and per_row == 10 * n
    assert tile.nbytes() - per_row <= 8 * (1 << 22) + 8 * (1 << 16)  # the tables do not grow with the rows
    ties = int(f["similarity"].drop_nulls().value_counts()["count"].max())  # rounded values: rows that share one
    assert tile.starts[-1] == n and int(np.diff(tile.starts[:-1]).max()) <= ties  # a bin is at most one value's rows
    live.set_bounds(1, below=0.01)  # a skewed column without ties (most rows near 0) is split into ~n/4096-row bins
    assert int(np.diff(live._tile.starts[:-1]).max()) < n // 1000


def test_a_grabbed_slider_answers_its_first_move_from_the_tile():
    f = _tile_frame(30_000, 4, np.float32)
    rec = Recipe.from_dict({"rules": [{"column": "similarity", "min": 0.3}, {"column": "punsafe", "below": 0.1}]})
    live = Live(f, rec, tile_rows=0)
    assert live.grab(0) and live._tile.index == 0 and live._tile.histogram is not None
    tile = live._tile
    live.set_bounds(0, min=0.32)
    assert live._tile is tile  # not rebuilt by the move
    got = live.counts(histogram_of=0)
    ref = Live(f, Recipe(list(live.recipe.rules)), tile_rows=10**12).counts(histogram_of=0)
    assert got == ref
    assert not Live(f, rec).grab(0)  # small collections keep the one-pass path
