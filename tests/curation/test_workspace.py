"""A curation session in code: what the widgets call."""
import numpy as np
import pytest

import workbench
from conftest import needs_shared
from workbench.demo.build import load_ground_truth
from workbench.errors import WorkbenchError
from workbench.curation.recipe import Recipe, preset
from workbench.curation.apply import apply
from workbench.curation.workspace import Workspace


def same_as_apply(ws):
    sel = apply(ws.collection, Recipe.from_dict(ws.recipe.to_dict()))
    c = ws.counts()
    assert c["kept"] == sel.kept
    assert [r["removed_in_order"] for r in c["rules"]] == sel.counts()["removed_in_order"].to_list()
    assert np.array_equal(np.nonzero(ws.kept_mask())[0], sel.kept_rows())
    assert np.array_equal(ws.first_reason(), sel.reason.astype(np.int64))


@needs_shared("heads")  # the rule on nsfw-b32
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


def test_panel_policies_live_in_the_workspace(demo_world):
    from workbench.curation.workspace import DEFAULT_RULES, PROBE_THRESHOLD

    ws = Workspace(demo_world)
    assert ws.recipe.rules == []  # a workspace starts empty; the panel opens with default_recipe()
    r = ws.default_recipe()
    assert r.name == "my-subset" and [x.to_dict() for x in r.rules] == [dict(d) for d in DEFAULT_RULES]
    assert "laion2b-en" in Workspace.presets()
    ws.set_recipe(r)
    # sliders: one per threshold rule, the bound it moves, clipped into the column's range
    specs = ws.sliders()
    assert [(s["index"], s["column"], s["bound"]) for s in specs] == [
        (0, "similarity", "min"), (1, "punsafe", "below"), (2, "pwatermark", "below")]
    sim = ws.frame["similarity"].to_numpy()
    lo, hi = ws.value_range("similarity")
    assert lo <= sim.min() + 1e-6 and hi >= sim.max() - 1e-6 and (specs[0]["low"], specs[0]["high"]) == (lo, hi)
    assert specs[0]["value"] == 0.28
    plo, phi = ws.value_range("punsafe")
    assert specs[1]["value"] == min(max(0.5, plo), phi)  # clipped into the column's range
    assert ws.default_histogram() == 0
    assert set(ws.score_columns()) == {"similarity", "punsafe", "pwatermark"} <= set(ws.scores())
    assert ws.scores()["punsafe"].dtype == np.float64 and len(ws.scores()["punsafe"]) == len(ws.collection)
    # dedup toggles: found by their params, added and removed once
    assert ws.dedup_rule("semantic") == {"dedup": "semantic", "threshold": 0.94}
    with pytest.raises(WorkbenchError, match="dedup mode"):
        ws.dedup_rule("fuzzy")
    assert ws.dedup_index("exact") is None and ws.set_dedup("exact", True)
    i = ws.dedup_index("exact")
    assert ws.recipe.rules[i].params == {"dedup": "exact"} and not ws.set_dedup("exact", True)
    assert ws.set_dedup("exact", False) and ws.dedup_index("exact") is None and not ws.set_dedup("exact", False)
    same_as_apply(ws)
    # rankable rules: prompts and heads, with the column a gallery ranks by
    assert ws.rankable_rules() == []
    j = ws.add_prompt("a watermark")
    (k, col), = ws.rankable_rules()
    assert k == j and col == ws.recipe.rules[j].threshold_column() and col in ws.frame.columns
    top = ws.top_by(col, 5)
    assert ws.frame[col].to_numpy()[top].min() >= np.sort(ws.frame[col].to_numpy())[-5]
    # the probe's rule: a row is flagged at probe score >= PROBE_THRESHOLD, the rule keeps those below
    with pytest.raises(WorkbenchError, match="no probe"):
        ws.probe_rule("watermark")
    truth = load_ground_truth(demo_world)
    wm = truth["has_watermark"].to_numpy()
    rng = np.random.default_rng(2)
    ws.label(rng.choice(np.nonzero(wm)[0], 15, replace=False), "watermark")
    ws.label(rng.choice(np.nonzero(~wm)[0], 15, replace=False), "clean")
    probe, path, pcol = ws.train_probe("watermark")
    rule = ws.probe_rule("watermark")
    assert rule == {"head": str(path), "below": PROBE_THRESHOLD, "name": "probe watermark < 0.5"}
    flagged = ws.flagged("watermark")
    assert np.array_equal(flagged, np.nonzero(ws.frame[pcol].to_numpy() >= PROBE_THRESHOLD)[0])
    n = ws.add_probe_rule("watermark")
    assert ws.recipe.rules[n].name == "probe watermark < 0.5"
    reason = ws.first_reason()
    earlier = np.nonzero((reason >= 0) & (reason < n))[0]
    assert np.array_equal(np.nonzero(reason == n)[0], np.setdiff1d(flagged, earlier))  # the rule drops the flagged
    same_as_apply(ws)
