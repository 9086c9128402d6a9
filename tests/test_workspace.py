"""A curation session in code: what the widgets call."""
import numpy as np
import pytest

import workbench
from workbench.demo import load_ground_truth
from workbench.errors import WorkbenchError
from workbench.recipe import Recipe, preset
from workbench.scoring import apply
from workbench.workspace import Workspace


def same_as_apply(ws):
    sel = apply(ws.collection, Recipe.from_dict(ws.recipe.to_dict()))
    c = ws.counts()
    assert c["kept"] == sel.kept
    assert [r["removed_in_order"] for r in c["rules"]] == sel.counts()["removed_in_order"].to_list()
    assert np.array_equal(np.nonzero(ws.kept_mask())[0], sel.kept_rows())
    assert np.array_equal(ws.first_reason(), sel.reason.astype(np.int64))


def test_edit_a_recipe_live(demo_world):
    ws = Workspace(demo_world, "laion2b-en")
    assert [r.kind for r in ws.recipe.rules] == ["caption_length", "dedup", "column"]
    same_as_apply(ws)
    (i, col), = ws.threshold_rules()
    assert (i, col) == (2, "similarity")
    before = ws.counts()["kept"]
    c = ws.set_bounds(2, min=0.35)
    assert c["kept"] < before and c["histogram"]["column"] == "similarity"
    assert ws.recipe.rules[2].params["min"] == 0.35
    same_as_apply(ws)
    j = ws.add_prompt("a watermark")  # default: drop the top 1% by the prompt
    assert ws.recipe.rules[j].kind == "prompt" and 0 < ws.counts()["rules"][j]["removed_alone"] <= 61
    same_as_apply(ws)
    k = ws.add_rule({"head": "nsfw-b32", "below": 0.5})
    ws.set_bounds(k, below=0.01)
    same_as_apply(ws)
    ws.remove_rule(0)
    assert len(ws.recipe.rules) == 4
    same_as_apply(ws)
    with pytest.raises(WorkbenchError, match="some text"):
        ws.add_prompt("  ")


def test_selection_becomes_rules(demo_world):
    ws = Workspace(demo_world)
    with pytest.raises(WorkbenchError, match="nothing is selected"):
        ws.drop_selection()
    ws.select([5, 3, 3, 7])
    i = ws.drop_selection()
    assert ws.recipe.rules[i].params == {"drop_rows": [3, 5, 7]} and ws.counts()["removed"] == 3
    ws.select(range(10, 20))
    j = ws.keep_selection()
    assert ws.counts()["kept"] == 10 and ws.recipe.rules[j].name == "keep only 10 selected rows"
    assert list(ws.removed_by(j, limit=3)) == [0, 1, 2]
    same_as_apply(ws)


def test_gallery_items_escape_nothing_themselves_but_flag_unsafe(demo_world):
    ws = Workspace(demo_world, Recipe.from_dict({"rules": [{"column": "punsafe", "below": 0.4}]}))
    truth = load_ground_truth(demo_world)
    unsafe_rows = np.nonzero(truth["is_unsafe"].to_numpy())[0][:3]
    items = ws.gallery([0, 1, *unsafe_rows])
    assert [it["row"] for it in items] == [0, 1, *unsafe_rows.tolist()]
    punsafe = ws.frame["punsafe"].to_numpy()
    assert [it["unsafe"] for it in items] == [bool(punsafe[r] > 0.4) for r in [0, 1, *unsafe_rows]]
    assert any(it["unsafe"] for it in items)
    assert all(it["thumbnail"] is None and "no local image" in it["image_problem"] for it in items)  # synthetic world
    assert items[0]["caption"] == ws.collection.metadata.head(1).collect()["caption"][0]
    assert ws.unsafe_threshold() == ("punsafe", 0.4)


def test_prompt_top_finds_the_prompted_concept(demo_world):
    ws = Workspace(demo_world)
    truth = load_ground_truth(demo_world)
    top = ws.prompt_top("a watermark", limit=30)
    assert truth["has_watermark"].to_numpy()[top].mean() > 0.8


def test_labels_train_a_probe_that_becomes_a_column(demo_world):
    ws = Workspace(demo_world)
    truth = load_ground_truth(demo_world)
    wm = truth["has_watermark"].to_numpy()
    rng = np.random.default_rng(1)
    ws.label(rng.choice(np.nonzero(wm)[0], 15, replace=False), "watermark")
    ws.label(rng.choice(np.nonzero(~wm)[0], 15, replace=False), "clean")
    probe, path, col = ws.train_probe("watermark")
    assert path.exists() and col in ws.frame.columns and probe.cv["precision"] > 0.6
    i = ws.add_rule({"head": str(path), "below": 0.5})
    removed = ws.first_reason() == i
    assert wm[removed].mean() > 4 * wm.mean() and wm[~removed].mean() < wm.mean() / 2  # enriched, and most found
    ws.label([1, 2], None)
    with pytest.raises(WorkbenchError, match="no rows are labelled"):
        ws.train_probe("nothing")


def test_recipe_files_and_export(demo_world, tmp_path):
    ws = Workspace(demo_world, preset("laion2b-en"))
    ws.set_bounds(2, min=0.3)
    ws.save_recipe(tmp_path / "r.yaml")
    other = Workspace(demo_world)
    other.load_recipe(tmp_path / "r.yaml")
    assert other.counts()["kept"] == ws.counts()["kept"]
    assert "similarity" in ws.recipe_text()
    m = ws.export(tmp_path / "out")
    out = workbench.open_collection(tmp_path / "out")
    assert len(out) == ws.counts()["kept"] == m["rows"]
    assert m["parameters"]["recipe"]["rules"][2] == {"column": "similarity", "min": 0.3}


def test_export_formats_workers_and_progress(demo_world, tmp_path):
    ws = Workspace(demo_world, preset("laion2b-en"))
    assert ws.export_formats() == ["laion", "img2dataset"]  # urls, no images, no DataComp uids
    seen = []
    m = ws.export(tmp_path / "out", rows_per_shard=1000, formats=("laion", "img2dataset"), workers=2,
                  progress=lambda done, total: seen.append((done, total)))
    kept = ws.counts()["kept"]
    assert m["outputs"]["img2dataset"]["rows"] == m["outputs"]["laion"]["rows"] == kept
    assert seen[0] == (0, 2 * kept) and seen[-1] == (2 * kept, 2 * kept)
    import polars as pl

    lists = pl.read_parquet(tmp_path / "out" / "img2dataset")
    assert lists["row"].to_list() == sorted(lists["row"].to_list()) and lists.height == kept
