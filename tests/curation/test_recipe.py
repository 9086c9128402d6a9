
import numpy as np
import polars as pl
import pytest

import workbench
from workbench.demo.build import build_demo_world, load_ground_truth
from workbench.errors import RecipeError
from workbench.curation.apply import apply
from workbench.curation.recipe import PRESETS, Recipe, Rule, evaluate, histogram, preset


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
    r = recipe({"caption_length": {"min_chars": 5}},
               {"column": "similarity", "min": 0.28},
               {"column": "punsafe", "below": 0.5})
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
    s = sel.summary(r)
    assert (s["rows"], s["kept"], s["removed"]) == (8, 2, 6)
    assert [x["removed_in_order"] for x in s["rules"]] == [3, 1, 2] and s["rules"][1]["kind"] == "column"


def test_every_rule_kind():
    f = frame()
    cases = [
        ({"column": "similarity", "above": 0.3, "max": 0.35}, [0, 3, 7]),
        ({"column": "similarity", "min": 0.35}, [0, 6]),  # inclusive
        ({"column": "similarity", "max": 0.2}, [1, 2]),  # inclusive
        ({"column": "nsfw_tag", "in": ["UNLIKELY"]}, [0, 1, 2, 5, 7]),
        ({"column": "nsfw_tag", "not_in": ["NSFW"]}, [0, 1, 2, 4, 5, 7]),
        ({"caption_length": {"min_words": 4}}, [0, 3, 5, 7]),
        ({"caption_length": {"max_chars": 5}}, [1, 2]),
        ({"caption_regex": "<[^>]+>"}, [0, 1, 2, 3, 5, 7]),
        ({"caption_regex": "^a ", "action": "keep"}, [0, 5]),
        ({"caption_keywords": ["watermark", "stock photo"]}, [0, 1, 2, 4, 5, 7]),
        ({"caption_keywords": "cat", "action": "keep"}, [0]),  # whole words: not "scenic"
        ({"image_size": {"min_side": 200, "max_aspect": 3}}, [0, 4, 6, 7]),
        ({"dedup": "exact"}, [0, 1, 3, 4, 5, 6, 7]),
        ({"dedup": "exact", "columns": ["caption"]}, [0, 1, 3, 4, 5, 6, 7]),
        ({"top_fraction": 0.5, "by": "similarity"}, [0, 3, 6, 7]),
        ({"drop_rows": [0, 7]}, [1, 2, 3, 4, 5, 6]),
        ({"keep_rows": [2, 3]}, [2, 3]),
        ({"language": "en"}, [0, 1, 2, 3, 7]),
    ]
    f = f.with_columns(language=pl.Series(["en", "en", "en", "en", "de", None, "fr", "en"]))
    for rule, kept in cases:
        assert evaluate(f, recipe(rule)).kept_rows().tolist() == kept, rule


def test_score_rules_name_their_columns_and_requests():
    r = Rule.parse({"prompt": "a watermark", "max": 0.25})
    (col,) = r.columns()
    assert col.startswith("prompt_") and r.name == "prompt 'a watermark' <= 0.25"
    assert r.score_requests() == [{"scorer": "prompt", "reduce": "max", "embeddings": "image",
                                   "texts": ["a watermark"], "column": col}]
    # the same prompt with other settings is another column; the same settings, the same column
    assert Rule.parse({"prompt": "a watermark", "reduce": "mean", "max": 0.25}).columns() != {col}
    assert Rule.parse({"prompt": ["a watermark"], "min": 0.1}).columns() == {col}
    e = Rule.parse({"prompt_embedding": "w.npy", "min": 0.2})
    assert e.kind == "prompt" and e.score_requests()[0]["files"] == ["w.npy"]
    h = Rule.parse({"head": "aesthetic-v2-l14", "min": 5})
    assert h.columns() == {"head_aesthetic-v2-l14"} and h.score_requests()[0]["head"] == "aesthetic-v2-l14"
    assert Rule.parse({"head": "probes/my probe.safetensors", "min": 0.5}).columns() == {"head_my_probe"}
    z = Rule.parse({"zero_shot": "laion400m-nsfw", "drop_tags": ["NSFW"]})
    assert z.columns() == {"laion400m_tag", "laion400m_drop"}
    d = Rule.parse({"dedup": "semantic", "threshold": 0.9})
    assert d.columns() == {"semdup_image_0.9"} and d.score_requests()[0]["threshold"] == 0.9
    assert Rule.parse({"dedup": "exact"}).score_requests() == []
    # zero-shot and semantic dedup evaluate over their columns
    f = pl.DataFrame({"row": [0, 1, 2, 3], "laion400m_tag": ["UNLIKELY", "NSFW", "UNSURE", None],
                      "laion400m_drop": [False, False, True, False], "semdup_image_0.9": [0, 0, 2, 3]})
    assert evaluate(f, recipe(z.to_dict())).kept_rows().tolist() == [0]
    assert evaluate(f, recipe({"zero_shot": "laion400m-nsfw"})).kept_rows().tolist() == [0, 1]
    assert evaluate(f, recipe(d.to_dict())).kept_rows().tolist() == [0, 2, 3]


def test_round_trip_yaml_and_json(tmp_path):
    r = recipe({"column": "similarity", "min": 0.28, "name": "clip"},
               {"caption_keywords": ["watermark"]}, {"top_fraction": 0.5, "by": "punsafe"}, name="mine")
    for ext in ("yaml", "json"):
        r.save(tmp_path / f"r.{ext}")
        back = Recipe.load(tmp_path / f"r.{ext}")
        assert back.to_dict() == r.to_dict() and back.rules[0].name == "clip"
        assert evaluate(frame(), back).kept_rows().tolist() == evaluate(frame(), r).kept_rows().tolist()
    # the contract's own spelling, written by hand
    (tmp_path / "hand.yaml").write_text("rules:\n  - {column: similarity, min: 0.3}\n  - {dedup: exact}\n"
                                        "  - {top_fraction: 0.5, by: similarity}\n")
    assert [x.kind for x in Recipe.load(tmp_path / "hand.yaml").rules] == ["column", "dedup", "top_fraction"]


def test_saved_recipe_keeps_relative_files_valid(tmp_path):
    (tmp_path / "a").mkdir()
    np.save(tmp_path / "a" / "w.npy", np.ones(4, np.float32))
    (tmp_path / "a" / "r.yaml").write_text("rules:\n  - {prompt_embedding: w.npy, max: 0.2}\n")
    r = Recipe.load(tmp_path / "a" / "r.yaml")
    (tmp_path / "b").mkdir()
    r.save(tmp_path / "b" / "r.yaml")
    back = Recipe.load(tmp_path / "b" / "r.yaml")
    f = back.rules[0].params["prompt_embedding"]
    assert (back.base / f).resolve() == (tmp_path / "a" / "w.npy").resolve()


def test_bad_recipes_name_the_file_and_rule(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("rules:\n  - {column: similarity, mim: 0.3}\n")
    with pytest.raises(RecipeError, match="rule 1: column: unknown setting\\(s\\) \\['mim'\\]") as e:
        Recipe.load(p)
    assert str(p) in str(e.value)
    p.write_text("rules:\n  - {caption_length: {min_chars: 5}}\n  - {sharpness: 3}\n")
    with pytest.raises(RecipeError, match="rule 2: a rule names its kind"):
        Recipe.load(p)
    p.write_text("rules: [ {column: x")
    with pytest.raises(RecipeError, match="not valid YAML"):
        Recipe.load(p)
    p.write_text("rules: {column: x}")
    with pytest.raises(RecipeError, match="a `rules:` list"):
        Recipe.load(p)
    with pytest.raises(RecipeError, match="two rules are named"):
        recipe({"column": "x", "min": 1}, {"column": "x", "min": 1})
    with pytest.raises(RecipeError, match="invalid pattern"):
        Rule.parse({"caption_regex": "("})
    with pytest.raises(RecipeError, match="top_fraction must be in"):
        Rule.parse({"top_fraction": 1.5, "by": "s"})
    with pytest.raises(RecipeError, match="needs `by"):
        Rule.parse({"top_fraction": 0.5})
    with pytest.raises(RecipeError, match="finite number"):
        Rule.parse({"column": "s", "min": "0.3"})
    with pytest.raises(RecipeError, match="needs a threshold"):
        Rule.parse({"prompt": "a cat"})
    with pytest.raises(RecipeError, match="not both"):
        Rule.parse({"prompt": "a cat", "prompt_embedding": "x.npy", "min": 0})
    with pytest.raises(RecipeError, match="dedup: must be exact or semantic"):
        Rule.parse({"dedup": "fuzzy"})
    with pytest.raises(RecipeError, match="threshold must be in"):
        Rule.parse({"dedup": "semantic", "threshold": 1.5})
    with pytest.raises(RecipeError, match="unknown prompt set"):
        Rule.parse({"zero_shot": "q99"})
    with pytest.raises(RecipeError, match="has one kind"):
        Rule.parse({"column": "s", "head": "nsfw-l14", "min": 1})
    with pytest.raises(RecipeError, match="needs column\\(s\\) \\['aesthetic'\\]"):
        evaluate(frame(), recipe({"column": "aesthetic", "min": 5}))


def test_histogram_ignores_nulls():
    counts, edges = histogram(frame()["similarity"], bins=64)
    assert counts.sum() == 7 and len(edges) == 65


def test_presets_match_the_reference():
    for name in PRESETS:
        assert preset(name).rules
    d = {n: preset(n).to_dict()["rules"] for n in PRESETS}
    assert {"column": "similarity", "min": 0.30} in d["laion400m"] and {"zero_shot": "laion400m-nsfw"} in d["laion400m"]
    assert {"column": "similarity", "min": 0.28} in d["laion2b-en"]
    for n in ("laion400m", "laion2b-en"):
        assert d[n][:2] == [{"caption_length": {"min_chars": 5}}, {"dedup": "exact", "columns": ["url", "caption"]}]
    assert d["laion-aesthetics"][:2] == [{"column": "punsafe", "below": 0.5}, {"column": "pwatermark", "below": 0.8}]
    assert d["datacomp-basic"] == [{"language": ["en"]}, {"caption_length": {"min_words": 3, "min_chars": 6}},
                                   {"image_size": {"min_side": 200, "max_aspect": 3}}]
    assert d["datacomp-clip-score"] == [{"top_fraction": 0.30, "by": "clip_l14_similarity_score", "cut": "datacomp"}]
    assert d["datacomp-clip-score-b32"] == [{"column": "clip_b32_similarity_score", "min": 0.25}]
    assert d["workbench-clip-score"] == [{"top_fraction": 0.30, "by": "similarity"}]
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
    assert counts["rule"].to_list() == ["caption >= 5 chars", "first of duplicate url + caption", "similarity>=0.3",
                                        "LAION-400M NSFW: under-age/animal rule"]
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
    sel = apply(c, recipe({"column": "punsafe", "below": 0.5}))
    removed = sel.reasons()["row"].to_numpy()
    unsafe = truth["is_unsafe"].to_numpy()
    assert unsafe[removed].mean() > 0.85 and unsafe[sel.kept_rows()].mean() < 0.01
    # a score column computed elsewhere joins on row
    scores = pl.DataFrame({"row": np.arange(len(c)), "my_score": (np.arange(len(c)) % 10).astype(float)})
    sel = apply(c, recipe({"column": "my_score", "min": 5}), scores=scores.lazy())
    assert sel.kept == len(c) // 2


def test_caption_keywords_from_a_word_file_or_a_named_list(tmp_path):
    (tmp_path / "words.txt").write_text("boat\nscenic view\n")
    (tmp_path / "r.yaml").write_text("rules:\n  - {caption_keywords: {file: words.txt}, action: keep}\n")
    r = Recipe.load(tmp_path / "r.yaml")
    assert r.rules[0].name == "caption has a word of words.txt"
    assert evaluate(frame(), r).kept_rows().tolist() == [5, 7]
    # saved elsewhere, the file reference still resolves
    (tmp_path / "b").mkdir()
    r.save(tmp_path / "b" / "r.yaml")
    assert evaluate(frame(), Recipe.load(tmp_path / "b" / "r.yaml")).kept_rows().tolist() == [5, 7]
    named = recipe({"caption_keywords": {"list": "imagenet-1k"}, "action": "keep"})
    # "mat"? no; "boat" is not an ImageNet class but "mountain" neither; "tabby cat" needs the phrase
    df = pl.DataFrame({"row": [0, 1, 2, 3], "caption": ["a Goldfish bowl", "my tabby cat", "a cat", "goldfishes"]})
    assert evaluate(df, named).kept_rows().tolist() == [0, 1]
    with pytest.raises(RecipeError, match="unknown list"):
        Rule.parse({"caption_keywords": {"list": "imagenet-21k"}})
    with pytest.raises(RecipeError, match="a list of words"):
        Rule.parse({"caption_keywords": {"file": "a.txt", "list": "imagenet-1k"}})
    with pytest.raises(RecipeError, match="no word list"):
        evaluate(frame(), recipe({"caption_keywords": {"file": str(tmp_path / "missing.txt")}}))


def test_image_clusters_rules_parse_and_name_their_columns(tmp_path):
    r = Rule.parse({"image_clusters": {"list": "imagenet-1k"}, "k": 50})
    (col,) = [q["column"] for q in r.score_requests()]
    assert col.startswith("imgclust_") and r.columns() == {col, col + "_near"}
    assert r.score_requests()[0]["names"] == "imagenet-1k" and r.name == "image cluster near imagenet-1k (k=50)"
    files = Rule.parse({"image_clusters": "ref.npy"}).score_requests()[0]
    texts = Rule.parse({"image_clusters": ["a photo of a cat", "a photo of a dog"]}).score_requests()[0]
    assert files["files"] == ["ref.npy"] and texts["texts"] == ["a photo of a cat", "a photo of a dog"]
    assert Rule.parse({"image_clusters": "ref.npy", "k": 3}).columns() != Rule.parse({"image_clusters": "ref.npy"}).columns()
    for bad, msg in (({"image_clusters": {"list": "x", "file": "y"}}, "a reference"),
                     ({"image_clusters": "r.npy", "k": 1}, "k must be"),
                     ({"image_clusters": "r.npy", "seed": -1}, "seed must be"),
                     ({"image_clusters": {"list": "imagenet-21k"}}, "unknown list"),
                     ({"image_clusters": {"list": "imagenet-1k"}, "template": "a photo"}, "template")):
        with pytest.raises(RecipeError, match=msg):
            Rule.parse(bad)
    # a saved recipe keeps a relative reference file valid
    (tmp_path / "a").mkdir()
    np.save(tmp_path / "a" / "ref.npy", np.ones((2, 4), np.float32))
    (tmp_path / "a" / "r.yaml").write_text("rules:\n  - {image_clusters: ref.npy, k: 4}\n")
    (tmp_path / "b").mkdir()
    Recipe.load(tmp_path / "a" / "r.yaml").save(tmp_path / "b" / "r.yaml")
    back = Recipe.load(tmp_path / "b" / "r.yaml")
    assert (back.base / back.rules[0].params["image_clusters"]).resolve() == (tmp_path / "a" / "ref.npy").resolve()


def test_datacomp_presets(world):
    """The workbench-* versions of DataComp's baselines run on any collection (the datacomp-* ones, exact
    to DataComp's code, are tested in test_datacomp_exact.py)."""
    d = {n: preset(n).to_dict()["rules"] for n in PRESETS}
    basic_text = [{"language": ["en"]}, {"caption_length": {"min_words": 3, "min_chars": 6}}]
    assert d["datacomp-laion2b"] == [{"language": ["en"], "detector": "gcld3"},
                                     {"column": "clip_b32_similarity_score", "min": 0.28}]
    assert d["workbench-laion2b"] == [{"language": ["en"]}, {"column": "similarity", "min": 0.28}]
    assert d["datacomp-text-based"] == [{"language": ["en"]}, {"caption_synsets": "imagenet-21k"}]
    assert d["workbench-text-based"] == basic_text + [{"caption_keywords": {"list": "imagenet-1k"}, "action": "keep"}]
    assert d["workbench-image-based"] == basic_text + [{"image_clusters": {"list": "imagenet-1k"}}]
    assert d["workbench-image-clip-score"] == d["workbench-image-based"] + [{"top_fraction": 0.30, "by": "similarity"}]
    c = workbench.open_collection(world)
    text = apply(c, preset("workbench-text-based"))
    image = apply(c, preset("workbench-image-based"))
    both = apply(c, preset("workbench-image-clip-score"))
    assert 0 < text.kept < image.kept < len(c)
    assert set(both.kept_rows()) <= set(image.kept_rows()) and both.kept < image.kept
    caps = c.metadata.select("caption").collect()["caption"].to_numpy()
    from workbench.curation.wordlists import words

    names = [w.lower() for w in words("imagenet-1k")]
    kept_caps = [caps[r].lower() for r in text.kept_rows()[:200]]
    assert all(any(n in cap for n in names) for cap in kept_caps)


@pytest.mark.parametrize("bound", ["min", "max", "above", "below"])
def test_a_nan_score_fails_every_threshold_evaluated_or_live(bound):
    """docs/recipes.md: a missing value fails every rule. polars orders NaN above every number, so `NaN >= t`
    alone would keep it; the recipe and the live kernel must agree that it fails."""
    from workbench.curation.live import Live

    f = pl.DataFrame({"row": [0, 1, 2, 3], "s": [0.1, float("nan"), None, 0.9]})
    r = Recipe([Rule({"column": "s", bound: 0.5})], "nan")
    want = {"min": [3], "above": [3], "max": [0], "below": [0]}[bound]
    assert evaluate(f, r).kept_rows().tolist() == want
    live = Live(f, r)
    assert live.selection().kept_rows().tolist() == want
    live.set_bounds(0, **{bound: 0.5})  # the kernel path after a slider move
    assert live.selection().kept_rows().tolist() == want
    int_rule = Recipe([Rule({"column": "i", bound: 1})], "ints")  # integer columns take the same bounds
    assert evaluate(pl.DataFrame({"row": [0, 1], "i": [0, 2]}), int_rule).kept_rows().tolist() == (
        [1] if bound in ("min", "above") else [0])
