"""Every registered rule kind keeps its declared contract, and a new kind is one class: defined here,
registered, and applied end to end (scores computed, rules evaluated, Live's sliders, a saved
recipe) without any other module knowing about it."""
from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from conftest import make_collection
from workbench.curation.apply import apply, needs_text_encoder, recipe_scorers
from workbench.curation.live import Live
from workbench.curation.recipe import Recipe, Rule, evaluate, threshold_bounds
from workbench.curation.rules import KINDS, RuleKind, kind_for_scorer, kind_of, register
from workbench.curation.rules.base import BOUNDS, bounded, bounds_name, check_bounds
from workbench.curation.rules.datacomp_image import DataCompImageRule
from workbench.errors import RecipeError
from workbench.scoring.scorers import Scorer

ROWS = [0, 1, 2, 3]
# every registered kind: a rule, the values of the columns it reads (4 rows), the rows it keeps.
# A new kind adds its case here (the test below fails for a kind without one).
CASES = {
    "column": ({"column": "similarity", "min": 0.3}, {"similarity": [0.35, 0.2, None, 0.3]}, [0, 3]),
    "prompt": ({"prompt": "a watermark", "max": 0.2}, {None: [0.1, 0.25, float("nan"), 0.2]}, [0, 3]),
    "head": ({"head": "aesthetic-v2-l14", "min": 5}, {"head_aesthetic-v2-l14": [6.0, 4.0, 5.0, None]}, [0, 2]),
    "zero_shot": ({"zero_shot": "laion400m-nsfw", "drop_tags": ["NSFW"]},
                  {"laion400m_tag": ["UNLIKELY", "NSFW", "UNSURE", None], "laion400m_drop": [False, False, True, False]},
                  [0]),
    "dedup": ({"dedup": "exact"}, {"url": ["a", "a", "b", "b"], "caption": ["x", "x", "y", "z"]}, [0, 2, 3]),
    "top_fraction": ({"top_fraction": 0.5, "by": "similarity"}, {"similarity": [0.1, 0.4, None, 0.3]}, [1, 3]),
    "caption_length": ({"caption_length": {"min_words": 2}}, {"caption": ["a cat", "dog", None, "a b c"]}, [0, 3]),
    "caption_regex": ({"caption_regex": "<[^>]+>"}, {"caption": ["<b>x</b>", "plain", None, "A <I>"]}, [1]),
    "caption_keywords": ({"caption_keywords": ["watermark"]}, {"caption": ["WATERMARK", "a cat", None, "watermarks"]},
                         [1, 3]),
    "image_size": ({"image_size": {"min_side": 200}}, {"width": [300, 100, 640, 150], "height": [300, 300, 199, 300]},
                   [0]),
    "language": ({"language": ["en"]}, {"language": ["en", "de", None, "en"]}, [0, 3]),
    "image_clusters": ({"image_clusters": "ref.npy", "k": 4}, {None: [3, 1, 0, 2], "_near": [True, False, None, True]},
                       [0, 3]),
    "drop_rows": ({"drop_rows": [1, 2]}, {}, [0, 3]),
    "keep_rows": ({"keep_rows": [1, 2]}, {}, [1, 2]),
    "caption_synsets": ({"caption_synsets": "imagenet-21k"}, {None: [True, False, None, True]}, [0, 3]),
    "datacomp_image": ({"datacomp_image": "small"}, {None: [True, True, None, True],
                                                     DataCompImageRule.columns({"datacomp_image": "small"})[1]:
                                                     [True, False, True, True]}, [0, 3]),
}


def tiny_frame(rule: Rule, values: dict) -> pl.DataFrame:
    """`values` by column name; key None is the rule's first column, "_near" a suffix of it."""
    first = sorted(rule.columns())[0]
    cols = {"row": ROWS}
    for k, v in values.items():
        cols[first if k is None else first + k if k.startswith("_") else k] = v
    return pl.DataFrame(cols, strict=False)


def test_every_registered_kind_has_a_case():
    assert len({k.key for k in KINDS}) == len(KINDS)
    assert sorted(CASES) == sorted(k.key for k in KINDS)


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.key)
def test_each_kind_keeps_its_contract(kind):
    params, values, kept = CASES[kind.key]
    r = Rule.parse(params)
    assert issubclass(kind, RuleKind) and r.spec is kind and r.kind == kind.key and kind_of(params) is kind
    assert set(params) <= kind.allowed() and {kind.key, *kind.aliases} <= kind.allowed()
    assert r.name == kind.name(params) and isinstance(r.name, str) and r.name
    assert r.columns() == set(kind.columns(params)) and r.columns()
    frame = tiny_frame(r, values)
    assert r.columns() <= set(frame.columns)
    assert evaluate(frame, Recipe([r])).kept_rows().tolist() == kept
    # a threshold kind compares its threshold column; others have none
    if kind.threshold:
        assert r.threshold_column() in r.columns()
        assert threshold_bounds(r) == [(r.threshold_column(), k, float(params[k])) for k in BOUNDS if k in params]
    else:
        assert r.threshold_column() is None and threshold_bounds(r) == [] and not kind.rankable
    # score requests are built by this kind's scorers
    for q in r.score_requests():
        assert q["scorer"] in kind.scorer_names and kind_for_scorer(q["scorer"]) is kind
        assert isinstance(kind.needs_text_encoder(q), bool)
    # file params are settings of the kind, in known forms
    for key, forms in kind.file_params.items():
        assert key in kind.allowed() and set(forms) <= {"path", "mapping"}
    with pytest.raises(RecipeError, match="unknown setting"):
        Rule.parse({**params, "no_such_setting": 1})


def test_file_params_are_rewritten_on_save(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "w.npy").write_bytes(b"")
    (tmp_path / "a" / "words.txt").write_text("cat\n")
    given = [{"prompt_embedding": "w.npy", "max": 0.2}, {"head": "w.npy", "min": 0.5},
              {"caption_keywords": {"file": "words.txt"}}, {"image_clusters": "w.npy"},
              {"caption_keywords": ["w.npy"], "name": "words are not files"}]
    r = Recipe.from_dict({"name": "f", "rules": given})
    r.base = tmp_path / "a"
    (tmp_path / "b").mkdir()
    r.save(tmp_path / "b" / "r.yaml")
    saved = Recipe.load(tmp_path / "b" / "r.yaml")
    assert [x.params for x in saved.rules][:4] == [
        {"prompt_embedding": "../a/w.npy", "max": 0.2}, {"head": "../a/w.npy", "min": 0.5},
        {"caption_keywords": {"file": "../a/words.txt"}}, {"image_clusters": "../a/w.npy"}]
    assert saved.rules[4].params == {"caption_keywords": ["w.npy"]}  # not a file param's form


# -- a new kind, defined here only -----------------------------------------------------------------
class AxisScorer(Scorer):
    """Coordinate `axis` of each row's unit image embedding."""

    needs = "image"

    def __init__(self, column: str, axis: int):
        self.column, self.axis = column, axis
        self.schema = {column: pl.Float32}

    def spec(self) -> dict:
        return {"scorer": "test_axis", "axis": self.axis}

    def chunk(self, view) -> dict[str, np.ndarray]:
        return {self.column: view.unit[:, self.axis].astype(np.float32)}


class AxisRule(RuleKind):
    """``{embedding_axis: 0, min: 0.1}``: a coordinate of the unit image embedding, thresholded."""

    key = "embedding_axis"
    settings = frozenset(BOUNDS)
    threshold = True
    rankable = True
    scorer_names = ("test_axis",)

    @classmethod
    def check(cls, p):
        if not isinstance(p["embedding_axis"], int) or isinstance(p["embedding_axis"], bool) or p["embedding_axis"] < 0:
            raise RecipeError("embedding_axis: needs an axis (an integer >= 0)")
        check_bounds(p, "embedding_axis")

    @classmethod
    def name(cls, p):
        return bounds_name(f"axis {p['embedding_axis']}", p, " ")

    @classmethod
    def columns(cls, p):
        return [f"axis_{p['embedding_axis']}"]

    @classmethod
    def keep(cls, p, base=None):
        return pl.all_horizontal(bounded(pl.col(cls.columns(p)[0]), p))

    @classmethod
    def score_requests(cls, p):
        return [{"scorer": "test_axis", "axis": p["embedding_axis"], "column": cls.columns(p)[0]}]

    @classmethod
    def scorer(cls, request, collection, encoder=None, base=None, device="auto"):
        return AxisScorer(request["column"], request["axis"])


@pytest.fixture
def axis_kind():
    register(AxisRule)
    try:
        yield AxisRule
    finally:
        KINDS.remove(AxisRule)


def test_a_new_kind_is_one_class_registered(axis_kind, tmp_path):
    rng = np.random.default_rng(0)
    arrays = [rng.normal(size=(n, 8)).astype(np.float32) for n in (5, 7)]
    c = make_collection(tmp_path / "c", arrays)
    unit = np.concatenate([a / np.linalg.norm(a, axis=1, keepdims=True) for a in arrays])
    recipe = Recipe.from_dict({"name": "axis", "rules": [{"embedding_axis": 0, "min": 0.0},
                                                          {"column": "similarity", "min": 0.25}]})
    rule = recipe.rules[0]
    assert rule.kind == "embedding_axis" and rule.name == "axis 0 >= 0" and not needs_text_encoder(recipe)
    assert [type(s) for s in recipe_scorers(c, recipe)] == [AxisScorer]
    sel = apply(c, recipe, cache=False)
    sim = np.linspace(0.2, 0.4, 5).tolist() + np.linspace(0.2, 0.4, 7).tolist()
    expected = [i for i in range(12) if unit[i, 0] >= 0 and sim[i] >= 0.25]
    assert sel.kept_rows().tolist() == expected
    assert sel.summary(recipe)["rules"][0]["kind"] == "embedding_axis"
    # Live moves its threshold like any other threshold rule's
    live = Live.from_collection(c, recipe)
    assert live.histogram(0)["column"] == "axis_0"
    live.set_bounds(0, min=0.2)
    assert live.recipe.rules[0].name == "axis 0 >= 0.2"
    assert live.counts()["kept"] == sum(1 for i in range(12) if unit[i, 0] >= 0.2 and sim[i] >= 0.25)
    # and it round-trips through a saved recipe
    recipe.save(tmp_path / "r.yaml")
    assert Recipe.load(tmp_path / "r.yaml").rules[0].params == {"embedding_axis": 0, "min": 0.0}


def test_register_refuses_a_taken_key():
    class Again(RuleKind):
        key = "column"

    with pytest.raises(ValueError, match="already taken"):
        register(Again)
    assert Again not in KINDS
    with pytest.raises(RecipeError, match="names its kind"):
        Rule.parse({"embedding_axis": 0, "min": 0})  # not registered outside its test


def test_image_size_fails_a_row_with_a_missing_side():
    """polars' min_horizontal skips nulls: a null width beside a passing height must still fail."""
    frame = pl.DataFrame({"row": [0, 1, 2, 3, 4], "width": [None, 300.0, float("nan"), 300.0, 100.0],
                          "height": [300.0, None, 300.0, 300.0, 300.0]})
    for spec in ({"min_side": 200}, {"min_height": 200}, {"max_aspect": 4}):
        recipe = Recipe.from_dict({"name": "size", "rules": [{"image_size": spec}]})
        kept = evaluate(frame, recipe).kept_rows().tolist()
        assert kept == ([3] if "min_side" in spec else [3, 4]), spec
