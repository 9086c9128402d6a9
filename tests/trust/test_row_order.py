"""Row order is a contract (issue 14): a table keyed by ``row`` means the same whatever its order.

Every property here builds the answer from a dict keyed by row id, then hands the workbench the
same table shuffled, with rows missing, with rows the collection does not have, and sometimes with
a row id listed twice: it must give exactly the dict's answer, or (a row id twice) one clear error.
Scores that are not finite (NaN, null, +inf, -inf) are never picked.
"""
from __future__ import annotations

import contextlib
import io
import itertools
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from conftest import make_embeddings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import workbench
from workbench.cli.main import main
from workbench.errors import RecipeError, WorkbenchError
from workbench.curation.live import Live
from workbench.papers.mixing import learn_mix
from workbench.curation.recipe import Recipe
from workbench.papers.sampling import sample
from workbench.curation.apply import apply

N = 60  # rows of the test collection: shards of 23, 17 and 20
SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
_names = itertools.count()


@pytest.fixture(scope="module")
def coll(tmp_path_factory) -> Path:
    return make_embeddings(tmp_path_factory.mktemp("row_order") / "c", rows=(23, 17, 20), dim=16, seed=3)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("row_order_files")


def fresh(scratch: Path, stem: str) -> Path:
    return scratch / f"{stem}_{next(_names)}"


def cli(*argv) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in argv])
    return rc, err.getvalue()


# -- a scores table, keyed by row, and its messy file --------------------------------------------------
value = st.one_of(st.floats(-4, 4, allow_nan=False), st.sampled_from([math.nan, math.inf, -math.inf, None]))


@st.composite
def messy(draw, n: int = N, value=value):
    """(truth: row -> score for some rows of the collection, the file's (row, score) lines in file
    order: shuffled, rows outside 0..n-1 added, and sometimes one row id listed twice)."""
    truth = draw(st.dictionaries(st.integers(0, n - 1), value, max_size=n))
    extra = draw(st.dictionaries(st.integers(n, 10 * n) | st.integers(-20, -1), value, max_size=4))
    lines = draw(st.permutations(list(truth.items()) + list(extra.items())))
    if truth and draw(st.integers(0, 4)) == 0:  # one in five: a row id twice (same or another value)
        again = (draw(st.sampled_from(sorted(truth))), draw(value))
        lines.insert(draw(st.integers(0, len(lines))), again)
    return truth, lines


def has_twice(lines) -> bool:
    ids = [r for r, _ in lines]
    return len(ids) != len(set(ids))


def write_scores(path: Path, lines, column: str = "s") -> Path:
    pl.DataFrame({"row": [r for r, _ in lines], column: [v for _, v in lines]},
                 schema={"row": pl.Int64, column: pl.Float64}).write_parquet(path)
    return path


def dense(truth: dict, n: int = N) -> np.ndarray:
    """The dict as one score per row id (NaN where the row has none)."""
    a = np.full(n, np.nan)
    for r, v in truth.items():
        a[r] = np.nan if v is None else v
    return a


# -- sampling itself: non-finite scores ------------------------------------------------------------------
@settings(max_examples=100, deadline=None)
@given(scores=st.lists(value, max_size=40), method=st.sampled_from(["top", "soft-cap", "hard-cap"]),
       n=st.integers(0, 30), seed=st.integers(0, 2**16))
def test_non_finite_scores_are_never_picked_by_any_method(scores, method, n, seed):
    z = np.array([np.nan if v is None else v for v in scores], dtype=np.float64)
    finite = np.isfinite(z)
    available = {"top": finite.sum(), "hard-cap": 2 * finite.sum(), "soft-cap": math.inf if finite.any() else 0}[method]
    try:
        counts = sample(scores, method, n, cap=2, batch=3, seed=seed)  # None given as is: a null
    except WorkbenchError:
        assert n > available  # refused only when there is not enough to pick from
        return
    assert counts.sum() == n and not counts[~finite].any()


# -- sample --scores -----------------------------------------------------------------------------------
@SETTINGS
@given(data=messy(), method=st.sampled_from(["top", "soft-cap", "hard-cap"]), n=st.integers(0, 25),
       seed=st.integers(0, 2**16))
def test_sample_uses_each_rows_own_score(coll, scratch, data, method, n, seed):
    truth, lines = data
    f = write_scores(fresh(scratch, "scores").with_suffix(".parquet"), lines)
    out = fresh(scratch, "picks").with_suffix(".parquet")
    rc, err = cli("sample", coll, "--by", "s", "--scores", f, "--method", method, "--n", n, "--cap", 3,
                  "--batch", 4, "--seed", seed, "--out", out)
    if has_twice(lines):
        assert rc == 2 and f.name in err and "listed twice" in err and not out.exists(), err
        return
    scores = dense(truth)
    try:
        want = sample(scores, method, n, cap=3, batch=4, seed=seed)
    except WorkbenchError:
        assert rc == 2 and not out.exists(), err
        return
    assert rc == 0, err
    got = pl.read_parquet(out)
    assert dict(zip(got["row"].to_list(), got["count"].to_list())) == {int(r): int(want[r]) for r in np.nonzero(want)[0]}
    assert np.isfinite(scores[got["row"].to_numpy()]).all()  # NaN, null, +-inf: never picked


@SETTINGS
@given(data=messy(), fraction=st.floats(0.01, 1.0))
def test_sample_top_fraction_matches_the_recipe_rule_on_the_same_scores(coll, scratch, data, fraction):
    """`sample --method top --fraction F` and the recipe rule `top_fraction: F` (through apply's
    scores join): the same rows, the finite scores only, ties to the lower row."""
    truth, lines = data
    if has_twice(lines):
        return
    f = write_scores(fresh(scratch, "scores").with_suffix(".parquet"), lines)
    out = fresh(scratch, "top").with_suffix(".parquet")
    scores = dense(truth)
    finite = np.nonzero(np.isfinite(scores))[0]
    k = math.ceil(fraction * len(finite))
    want = sorted(finite[np.lexsort((finite, -scores[finite]))[:k]].tolist())
    rc, err = cli("sample", coll, "--by", "s", "--scores", f, "--method", "top", "--fraction", fraction, "--out", out)
    assert rc == 0, err
    assert sorted(pl.read_parquet(out)["row"].to_list()) == want
    sel = apply(workbench.open_collection(coll), Recipe.from_dict({"rules": [{"top_fraction": fraction, "by": "s"}]}),
                scores=pl.scan_parquet(f))
    assert sel.kept_rows().tolist() == want


# -- mix --scores ----------------------------------------------------------------------------------------
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=messy(), labelled=st.lists(st.integers(0, N - 1), min_size=6, max_size=30, unique=True),
       label_seed=st.integers(0, 2**16))
def test_mix_learns_from_each_rows_own_score(coll, scratch, data, labelled, label_seed):
    truth, lines = data
    f = write_scores(fresh(scratch, "scores").with_suffix(".parquet"), lines)
    rng = np.random.default_rng(label_seed)
    labels = pl.DataFrame({"row": rng.permutation(labelled), "label": rng.integers(0, 2, len(labelled))},
                          schema={"row": pl.Int64, "label": pl.Int64})
    lab = fresh(scratch, "labels").with_suffix(".parquet")
    labels.write_parquet(lab)
    out = fresh(scratch, "mix").with_suffix(".parquet")
    rc, err = cli("mix", coll, "--column", "s", "--scores", f, "--labels", lab, "--out", out)
    if has_twice(lines):
        assert rc == 2 and f.name in err and "listed twice" in err and not out.exists(), err
        return
    frame = pl.DataFrame({"row": np.arange(N), "s": [truth.get(r) for r in range(N)]},
                         schema={"row": pl.Int64, "s": pl.Float64})  # the dict, in row order: null where none
    try:
        mix = learn_mix(frame, labels.sort("row"), ["s"])
    except WorkbenchError:
        assert rc == 2 and not out.exists(), err
        return
    assert rc == 0, err
    got = pl.read_parquet(out)
    assert got["row"].to_list() == list(range(N))
    np.testing.assert_allclose(got["mix"].to_numpy(), mix.score(frame), rtol=1e-9, equal_nan=True)


def test_mix_does_not_depend_on_the_order_of_its_inputs():
    rng = np.random.default_rng(0)
    n = 300
    frame = pl.DataFrame({"row": np.arange(n), "a": rng.normal(size=n), "b": rng.normal(size=n)})
    labels = pl.DataFrame({"row": np.arange(0, n, 2), "label": (frame["a"].to_numpy()[::2] > 0).astype(np.int64)})
    ref = learn_mix(frame, labels, ["a", "b"], seed=1)
    p, q = rng.permutation(n), rng.permutation(labels.height)
    other = learn_mix(frame[p], labels[q], ["a", "b"], seed=1)
    assert np.array_equal(ref.weights, other.weights) and ref.cv == other.cv
    with pytest.raises(WorkbenchError, match="listed twice"):
        learn_mix(frame, pl.concat([labels, labels.head(1)]), ["a", "b"])


# -- export --rows -----------------------------------------------------------------------------------------
@st.composite
def picks(draw, n: int = N):
    counts = draw(st.dictionaries(st.integers(0, n - 1), st.integers(0, 4), min_size=1, max_size=20))
    lines = draw(st.permutations(list(counts.items())))
    if draw(st.integers(0, 4)) == 0:
        lines.insert(draw(st.integers(0, len(lines))), (draw(st.sampled_from(sorted(counts))), draw(st.integers(0, 4))))
    return counts, lines


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=picks(), with_counts=st.booleans())
def test_export_rows_writes_each_listed_row_by_its_id(coll, scratch, data, with_counts):
    counts, lines = data
    f = fresh(scratch, "rows").with_suffix(".parquet")
    cols = {"row": [r for r, _ in lines]}
    if with_counts:
        cols["count"] = [k for _, k in lines]
    pl.DataFrame(cols, schema={k: pl.Int64 for k in cols}).write_parquet(f)
    dst = fresh(scratch, "export")
    rc, err = cli("export", coll, dst, "--rows", f)
    if with_counts and has_twice(lines):
        assert rc == 2 and f.name in err and "listed twice" in err and not dst.exists(), err
        return
    if with_counts:
        want = [r for r in sorted(counts) for _ in range(counts[r])]  # source order, each row count times
    else:
        want = sorted({r for r, _ in lines})  # without counts the file is a set
    if not want:
        return  # nothing to write: not a row-order question
    assert rc == 0, err
    written = workbench.open_collection(dst).metadata.select("SAMPLE_ID").collect()["SAMPLE_ID"].to_list()
    assert written == want  # the fixture's SAMPLE_ID is the global row id


# -- score --out, then joined back ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def scored(coll, tmp_path_factory) -> pl.DataFrame:
    out = tmp_path_factory.mktemp("score_out") / "sim.parquet"
    rc, err = cli("score", coll, "--similarity", "--out", out, "--json")
    assert rc == 0, err
    return pl.read_parquet(out)


def test_score_out_lists_every_row_once_in_row_order(coll, scored):
    assert scored["row"].to_list() == list(range(N))
    c = workbench.open_collection(coll)
    img, txt = c.take_embeddings(np.arange(N), "image"), c.take_embeddings(np.arange(N), "text")
    cos = np.einsum("ij,ij->i", img.astype(np.float64), txt.astype(np.float64)) / (
        np.linalg.norm(img.astype(np.float64), axis=1) * np.linalg.norm(txt.astype(np.float64), axis=1))
    np.testing.assert_allclose(scored["clip_similarity"].to_numpy(), cos, atol=2e-3)  # each row its own pair


@SETTINGS
@given(order=st.permutations(list(range(N))), keep=st.integers(1, N), method=st.sampled_from(["top", "hard-cap"]),
       seed=st.integers(0, 100))
def test_a_shuffled_score_out_file_samples_like_the_original(coll, scratch, scored, order, keep, method, seed):
    sub = scored[order[:keep]]  # shuffled, and only `keep` rows
    f = fresh(scratch, "sim").with_suffix(".parquet")
    sub.write_parquet(f)
    out = fresh(scratch, "picks").with_suffix(".parquet")
    n = min(5, keep)
    rc, err = cli("sample", coll, "--by", "clip_similarity", "--scores", f, "--method", method, "--n", n,
                  "--seed", seed, "--out", out)
    assert rc == 0, err
    truth = dict(zip(sub["row"].to_list(), sub["clip_similarity"].to_list()))
    want = sample(dense(truth), method, n, seed=seed)
    got = pl.read_parquet(out)
    assert dict(zip(got["row"].to_list(), got["count"].to_list())) == {int(r): int(want[r]) for r in np.nonzero(want)[0]}


# -- apply(scores=...), Live, Workspace ----------------------------------------------------------------
@SETTINGS
@given(data=messy(), t=st.floats(-4, 4))
def test_apply_with_a_scores_frame_keys_it_by_row(coll, data, t):
    truth, lines = data
    frame = pl.DataFrame({"row": [r for r, _ in lines], "s": [v for _, v in lines]},
                         schema={"row": pl.Int64, "s": pl.Float64})
    recipe = Recipe.from_dict({"rules": [{"column": "s", "min": t}]})
    c = workbench.open_collection(coll)
    if has_twice(lines):
        with pytest.raises(WorkbenchError, match="listed twice"):
            apply(c, recipe, scores=frame.lazy())
        return
    sel = apply(c, recipe, scores=frame.lazy())
    s = dense(truth)
    assert sel.rows.tolist() == list(range(N))
    assert sel.kept_rows().tolist() == [r for r in range(N) if not np.isnan(s[r]) and s[r] >= t]  # null and NaN: fail


@SETTINGS
@given(data=messy(), t=st.floats(-4, 4), fraction=st.floats(0.05, 1.0), seed=st.integers(0, 2**16))
def test_live_counts_follow_row_ids_not_frame_order(data, t, fraction, seed):
    truth, _ = data
    s = dense(truth)
    rows = np.random.default_rng(seed).permutation(N)
    frame = pl.DataFrame({"row": rows, "s": s[rows]})
    recipe = Recipe.from_dict({"rules": [{"column": "s", "min": t}, {"top_fraction": fraction, "by": "s"}]})
    live = Live(frame, recipe)
    finite = np.nonzero(np.isfinite(s))[0]
    top = set(finite[np.lexsort((finite, -s[finite]))[:math.ceil(fraction * len(finite))]].tolist())
    want = [r for r in range(N) if np.isfinite(s[r]) and s[r] >= t and r in top]  # +inf fails `top`: not finite
    assert live.rows.tolist() == list(range(N))
    assert live.selection().kept_rows().tolist() == want
    assert np.nonzero(live.packed == 0)[0].tolist() == want
    ref = Live(frame.sort("row"), recipe)
    assert live.counts() == ref.counts()
    live.set_bounds(0, min=t / 2)
    ref.set_bounds(0, min=t / 2)
    assert np.array_equal(live.packed, ref.packed)
    with pytest.raises(RecipeError, match="listed twice"):
        Live(pl.concat([frame, frame.head(1)]), recipe)


def test_workspace_adds_computed_columns_by_row(tmp_path):
    """A collection without metadata: similarity is computed and joined on row; kept rows are the
    rows whose own image-caption cosine passes, read from the embeddings here."""
    from workbench.curation.workspace import Workspace

    root = make_embeddings(tmp_path / "nometa", rows=(23, 17, 20), dim=16, seed=5, metadata=None)
    c = workbench.open_collection(root)
    img = c.take_embeddings(np.arange(N), "image").astype(np.float64)
    txt = c.take_embeddings(np.arange(N), "text").astype(np.float64)
    cos = np.einsum("ij,ij->i", img, txt) / (np.linalg.norm(img, axis=1) * np.linalg.norm(txt, axis=1))
    ws = Workspace(c, Recipe.from_dict({"rules": [{"column": "similarity", "min": float(np.median(cos))}]}))
    assert ws.frame["row"].to_list() == list(range(N))
    np.testing.assert_allclose(ws.frame["similarity"].to_numpy(), cos, atol=2e-3)

    @settings(max_examples=30, deadline=None)
    @given(t=st.floats(float(cos.min()), float(cos.max())))
    def thresholds(t):
        ws.set_bounds(0, min=t)
        sure = np.abs(cos - t) > 2e-3
        assert np.array_equal(ws.kept_mask()[sure], (cos >= t)[sure])
        assert np.array_equal(ws.live.selection().kept_rows(), np.nonzero(ws.kept_mask())[0])

    thresholds()
