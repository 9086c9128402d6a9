"""The map's density raster: every row counted in its pixel, kept or removed, exactly."""
import numpy as np
import polars as pl
import pytest

from workbench.curation.live import Live
from workbench.curation.recipe import Recipe, evaluate
from workbench.errors import WorkbenchError
from workbench.map.density import DensityMap, Raster


def _world(n=30_000, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 3, n).astype(np.float32)
    y = rng.normal(1, 2, n).astype(np.float32)
    x[::101] = np.nan  # rows not on the map (invalid embeddings)
    frame = pl.DataFrame({"row": np.arange(n), "similarity": rng.normal(0.3, 0.05, n).astype(np.float32),
                          "punsafe": rng.random(n).astype(np.float32)})
    return x, y, frame


def _reference(x, y, kept, window, size):
    x0, x1, y0, y1 = window
    w, h = size
    ok = np.isfinite(x) & np.isfinite(y)
    i = np.floor((x.astype(np.float64) - x0) * (w / (x1 - x0)))
    j = np.floor((y.astype(np.float64) - y0) * (h / (y1 - y0)))
    inside = ok & (i >= 0) & (i < w) & (j >= 0) & (j < h)
    out = np.zeros((2, h, w), np.int64)
    for row in np.flatnonzero(inside):
        out[0 if kept[row] else 1, h - 1 - int(j[row]), int(i[row])] += 1
    return out


@pytest.mark.parametrize("numba", [True, False])
def test_the_raster_counts_every_row_in_its_pixel_kept_or_removed(numba, monkeypatch):
    if not numba:
        monkeypatch.setenv("WORKBENCH_NO_NUMBA", "1")
    x, y, frame = _world()
    recipe = Recipe.from_dict({"rules": [{"column": "similarity", "min": 0.3}, {"column": "punsafe", "below": 0.7}]})
    live = Live(frame, recipe, tile_rows=0)  # slider moves answered from the tile: the drag's bit stays unwritten
    dm = DensityMap(x, y, size=(64, 40))
    for bounds in ({"min": 0.31}, {"min": 0.25}, {"min": 0.33, "max": 0.36}):
        live.set_bounds(0, **bounds)
        with live.lock:
            packed, mask, pending = live.kept_inputs()
            assert pending is not None  # a drag in progress: the kept mask is not materialised
            r = dm.raster(packed, mask, pending)
        kept = evaluate(frame, Recipe(list(live.recipe.rules))).mask
        ref = _reference(x, y, kept, dm.window, dm.size)
        assert np.array_equal(r.kept, ref[0]) and np.array_equal(r.removed, ref[1]), bounds
        assert r.rows == int((np.isfinite(x) & np.isfinite(y)).sum())  # the whole map: every placed row
    window = (-1.0, 2.0, 0.0, 1.5)  # a zoom: only the rows inside, at full resolution
    dm.set_window(window)
    with live.lock:
        r = dm.raster(*live.kept_inputs())
    ref = _reference(x, y, evaluate(frame, Recipe(list(live.recipe.rules))).mask, window, dm.size)
    assert np.array_equal(r.kept, ref[0]) and np.array_equal(r.removed, ref[1]) and 0 < r.rows < len(x) // 5


def test_the_image_blends_kept_and_removed_by_share_and_leaves_empty_pixels_clear():
    kept = np.array([[4, 0, 0], [2, 0, 1]])
    removed = np.array([[0, 0, 3], [2, 0, 100]])
    img = Raster(kept, removed, (0, 1, 0, 1)).rgba()
    assert img.shape == (2, 3, 4) and img.dtype == np.uint8
    assert tuple(img[0, 0, :3]) == (0x1F, 0x77, 0xB4) and tuple(img[0, 2, :3]) == (0xD6, 0x27, 0x28)
    assert img[0, 1, 3] == 0 and img[1, 1, 3] == 0  # nothing there
    assert img[1, 2, 3] > img[0, 0, 3] > 0  # more rows, more opaque
    assert Raster(kept, removed, (0, 1, 0, 1)).png()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_windows_and_mismatched_rows_are_refused():
    x, y, _ = _world(100)
    dm = DensityMap(x, y, size=(8, 8))
    with pytest.raises(WorkbenchError, match="x0 < x1"):
        dm.set_window((1.0, 0.0, 0.0, 1.0))
    with pytest.raises(WorkbenchError, match="fail patterns"):
        dm.raster(np.zeros(99, np.uint16), 1)


@pytest.mark.parametrize("numba", [True, False])
def test_a_drag_repaints_by_flipping_only_the_rows_between_the_thresholds(numba, monkeypatch):
    """During a drag the raster is updated from the last one: rows in the slider tile's bins between
    the old and new thresholds flip between kept and removed. The result equals a full raster."""
    if not numba:
        monkeypatch.setenv("WORKBENCH_NO_NUMBA", "1")
    x, y, frame = _world(40_000, 3)
    recipe = Recipe.from_dict({"rules": [{"column": "punsafe", "below": 0.7}, {"column": "similarity", "min": 0.3}]})
    live = Live(frame, recipe, tile_rows=0)
    dm = DensityMap(x, y, size=(50, 30))
    live.set_bounds(1, min=0.3)
    with live.lock:
        packed, mask, pending = live.kept_inputs()
        prev = dm.raster(packed, mask, pending)
    tile, old = live._tile, pending[1:]
    for bounds in ({"min": 0.305}, {"min": 0.29}, {"above": 0.29}, {"min": 0.29, "max": 0.33}, {"max": 0.31}):
        live.set_bounds(1, **bounds)
        with live.lock:
            packed, mask, pending = live.kept_inputs()
            full = dm.raster(packed, mask, pending)
        a, b = tile.changed(old, pending[1:])
        upd = dm.update(prev, tile, old, pending[1:])
        if b - a < len(x) // 3:
            assert upd is not None and b - a < len(x), bounds
            assert np.array_equal(upd.kept, full.kept) and np.array_equal(upd.removed, full.removed), bounds
        else:
            assert upd is None
        prev, old = full, pending[1:]
