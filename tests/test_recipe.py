
import numpy as np
import polars as pl
import pytest

import workbench
from workbench.demo import build_demo_world, load_ground_truth
from workbench.errors import RecipeError
from workbench.recipe import PRESETS, Recipe, Rule, apply, evaluate, histogram, preset


def frame():
    return pl.DataFrame({
        "row": list(range(8)),
        "url": ["u0", "u1", "u1", "u3", "u4", "u5", "u6", "u7"],
        "caption": ["a cat on a mat", "dog", "dog", "Stock Photo - a WATERMARK", "<b>bird</b> in snow",
                    "a photo of a boat", None, "scenic view of the mountain"],
        "similarity": [0.35, 0.20, 0.20, 0.31, 0.29, None, 0.40, 0.33],
        "punsafe": [0.01, 0.02, 0.02, 0.9, 0.1, 0.3, 0.0, 0.6],
        "width": [640, 100, 100, 800, 300, 1000, 256, 900],
        "height": [480, 100, 100, 200, 300, 250, 256, 300],
        "nsfw_tag": ["UNLIKELY", "UNLIKELY", "UNLIKELY", "NSFW", "UNSURE", "UNLIKELY", None, "UNLIKELY"],
    })


def recipe(*rules, name="t"):
    return Recipe.from_dict({"name": name, "rules": list(rules)})


def test_first_reason_counts_and_overlaps():
    r = recipe({"kind": "caption_length", "min_chars": 5},
               {"kind": "column", "column": "similarity", "min": 0.28},
               {"kind": "column", "column": "punsafe", "below": 0.5})
    sel = evaluate(frame(), r)
    assert sel.kept_rows().tolist() == [0, 4]
    reasons = dict(zip(*sel.reasons().to_dict(as_series=False).values()))
    assert reasons == {1: "caption >= 5 chars", 2: "caption >= 5 chars", 3: "punsafe<0.5", 5: "similarity>=0.28",
                       6: "caption >= 5 chars", 7: "punsafe<0.5"}
    c = sel.counts()
    assert c["removed_alone"].to_list() == [3, 3, 2]  # the null caption and null similarity fail
    assert c["removed_in_order"].to_list() == [3, 1, 2] and c["remaining"].to_list() == [5, 4, 2]
    assert sel.overlaps[0, 1] == 2 and sel.overlaps[1, 2] == 0 and sel.overlaps[0, 0] == 3
    assert sel.kept + sel.removed == 8 and sel.mask.sum() == 2


def test_every_rule_kind():
    f = frame()
    cases = [
        ({"kind": "column", "column": "similarity", "above": 0.3, "max": 0.35}, [0, 3, 7]),
        ({"kind": "column", "column": "nsfw_tag", "in": ["UNLIKELY"]}, [0, 1, 2, 5, 7]),
        ({"kind": "column", "column": "nsfw_tag", "not_in": ["NSFW"]}, [0, 1, 2, 4, 5, 7]),
        ({"kind": "caption_length", "min_words": 4}, [0, 3, 5, 7]),
        ({"kind": "caption_regex", "pattern": "<[^>]+>"}, [0, 1, 2, 3, 5, 7]),
        ({"kind": "caption_regex", "pattern": "^a ", "action": "keep"}, [0, 5]),
        ({"kind": "caption_keywords", "words": ["watermark", "stock photo"]}, [0, 1, 2, 4, 5, 7]),
        ({"kind": "caption_keywords", "words": ["cat"], "action": "keep"}, [0]),  # whole words: not "scenic"
        ({"kind": "image_size", "min_side": 200, "max_aspect": 3}, [0, 4, 6, 7]),
        ({"kind": "dedup_exact"}, [0, 1, 3, 4, 5, 6, 7]),
        ({"kind": "top_fraction", "column": "similarity", "fraction": 0.5}, [0, 3, 6, 7]),
        ({"kind": "drop_rows", "rows": [0, 7]}, [1, 2, 3, 4, 5, 6]),
        ({"kind": "keep_rows", "rows": [2, 3]}, [2, 3]),
    ]
    for rule, kept in cases:
        assert evaluate(f, recipe(rule)).kept_rows().tolist() == kept, rule


def test_round_trip_yaml_and_json(tmp_path):
    r = recipe({"kind": "column", "column": "similarity", "min": 0.28, "name": "clip"},
               {"kind": "caption_keywords", "words": ["watermark"]}, name="mine")
    for ext in ("yaml", "json"):
        r.save(tmp_path / f"r.{ext}")
        back = Recipe.load(tmp_path / f"r.{ext}")
        assert back.to_dict() == r.to_dict() and back.rules[0].name == "clip"
        assert evaluate(frame(), back).kept_rows().tolist() == evaluate(frame(), r).kept_rows().tolist()


def test_bad_recipes_name_the_file_and_rule(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("rules:\n  - {kind: column, column: similarity, mim: 0.3}\n")
    with pytest.raises(RecipeError, match="rule 1: rule column: unknown setting\\(s\\) \\['mim'\\]") as e:
        Recipe.load(p)
    assert str(p) in str(e.value)
    p.write_text("rules:\n  - {kind: caption_length, min_chars: 5}\n  - {kind: sharpness}\n")
    with pytest.raises(RecipeError, match="rule 2: unknown rule kind 'sharpness'"):
        Recipe.load(p)
    p.write_text("rules: [ {kind: column")
    with pytest.raises(RecipeError, match="not valid YAML"):
        Recipe.load(p)
    with pytest.raises(RecipeError, match="two rules are named"):
        recipe({"kind": "column", "column": "x", "min": 1}, {"kind": "column", "column": "x", "min": 1})
    with pytest.raises(RecipeError, match="invalid pattern"):
        Rule("caption_regex", {"pattern": "("})
    with pytest.raises(RecipeError, match="fraction must be in"):
        Rule("top_fraction", {"column": "s", "fraction": 1.5})
    with pytest.raises(RecipeError, match="finite number"):
        Rule("column", {"column": "s", "min": "0.3"})
    with pytest.raises(RecipeError, match="needs column\\(s\\) \\['aesthetic'\\]"):
        evaluate(frame(), recipe({"kind": "column", "column": "aesthetic", "min": 5}))


def test_histogram_ignores_nulls():
    counts, edges = histogram(frame()["similarity"], bins=64)
    assert counts.sum() == 7 and len(edges) == 65


def test_presets_parse():
    for name in PRESETS:
        assert preset(name).rules
    with pytest.raises(RecipeError, match="unknown preset"):
        preset("nope")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_demo_world(tmp_path_factory.mktemp("w") / "world", rows=20_000, seed=3)


def test_presets_on_the_demo_world_against_ground_truth(world):
    c = workbench.open_collection(world)
    truth = load_ground_truth(world)
    sel = apply(c, preset("laion400m"))
    counts = sel.counts()
    assert counts["rule"].to_list() == ["caption >= 5 chars", "first of duplicate url + caption", "similarity>=0.3"]
    gone = sel.reasons()
    dedup = gone.filter(pl.col("reason") == "first of duplicate url + caption")["row"].to_numpy()
    exact = truth.filter(pl.col("exact_dup"))["row"].to_numpy()
    # exact dedup removes exactly the ground truth's exact copies that survived the length rule
    short = set(gone.filter(pl.col("reason") == "caption >= 5 chars")["row"].to_list())
    assert set(dedup.tolist()) == set(exact.tolist()) - short
    # the similarity cut removes mismatched captions far more than matched ones
    kinds = truth.select("row", "caption_kind")
    removed_sim = set(gone.filter(pl.col("reason") == "similarity>=0.3")["row"].to_list())
    share = {k: np.mean([r in removed_sim for r in kinds.filter(pl.col("caption_kind") == k)["row"].to_list()])
             for k in ("matched", "mismatched")}
    assert share["mismatched"] > 0.9 and share["matched"] < 0.4


def test_score_columns_join_and_unsafe_precision(world):
    c = workbench.open_collection(world)
    truth = load_ground_truth(world)
    sel = apply(c, recipe({"kind": "column", "column": "punsafe", "below": 0.5}))
    removed = sel.reasons()["row"].to_numpy()
    unsafe = truth["is_unsafe"].to_numpy()
    assert unsafe[removed].mean() > 0.85 and unsafe[sel.kept_rows()].mean() < 0.01
    # a score column computed elsewhere joins on row
    scores = pl.DataFrame({"row": np.arange(len(c)), "my_score": (np.arange(len(c)) % 10).astype(float)})
    sel = apply(c, recipe({"kind": "column", "column": "my_score", "min": 5}), scores=scores.lazy())
    assert sel.kept == len(c) // 2
