"""The scoring engine: columns over all rows, streamed by shard, cached, stale caches recomputed."""
import os

import numpy as np
import polars as pl
import pytest

import workbench
from conftest import make_embeddings, needs_shared, unit_rows
from workbench.engine import make_engine
from workbench.models.heads import ModelMismatchError, head
from workbench.demo.textencoder import DemoText
from workbench.curation.recipe import Recipe, preset
from workbench.scoring.scorers import (HeadScorer, Laion400mScorer, LanguageScorer, PromptScorer, SafetyScorer,
                               SimilarityScorer)
from workbench.curation.apply import apply
from workbench.scoring.compute import compute

needs_heads = needs_shared("heads")


def f64_unit(x):
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def all_rows(c, kind="image"):
    return np.concatenate([np.asarray(c.embeddings(i, kind), np.float64) for i in range(len(c.shards))])


def test_prompt_scores_equal_an_independent_computation(tmp_path):
    root = make_embeddings(tmp_path / "c", rows=(300, 200, 100), dim=32)
    c = workbench.open_collection(root)
    q = unit_rows(3, 32, 7)
    np.save(tmp_path / "q.npy", q)
    np.save(tmp_path / "neg.npy", q[2])
    emb = f64_unit(all_rows(c))
    cos = emb @ f64_unit(q.astype(np.float64)).T
    res = compute(c, [
        PromptScorer("one", files=[str(tmp_path / "neg.npy")]),
        PromptScorer("best", files=[str(tmp_path / "q.npy")]),
        PromptScorer("avg", files=[str(tmp_path / "q.npy")], reduce="mean"),
    ], cache=False).collect()
    assert res["row"].to_list() == list(range(600))
    np.testing.assert_allclose(res["one"].to_numpy(), cos[:, 2], atol=2e-3)
    np.testing.assert_allclose(res["best"].to_numpy(), cos.max(axis=1), atol=2e-3)
    np.testing.assert_allclose(res["avg"].to_numpy(), cos.mean(axis=1), atol=2e-3)


def test_negative_prompts_subtract_their_max(demo_world):
    c = workbench.open_collection(demo_world)
    enc = DemoText(demo_world)
    res = compute(c, [PromptScorer("p", texts=["a dog", "a puppy"], negatives=["a cat", "a drawing"])], cache=False).collect()
    emb = f64_unit(all_rows(c))
    pos = emb @ enc.encode_text(["a dog", "a puppy"]).T.astype(np.float64)
    neg = emb @ enc.encode_text(["a cat", "a drawing"]).T.astype(np.float64)
    np.testing.assert_allclose(res["p"].to_numpy(), pos.max(1) - neg.max(1), atol=2e-3)


def test_nan_and_zero_rows_score_null(tmp_path):
    root = make_embeddings(tmp_path / "c", rows=(6, 4), dim=16, dtype="float32")
    p = root / "img_emb" / "img_emb_1.npy"
    a = np.load(p)
    a[1] = np.nan
    a[2] = 0
    np.save(p, a)
    c = workbench.open_collection(root)
    np.save(tmp_path / "q.npy", unit_rows(1, 16, 3)[0])
    df = compute(c, [PromptScorer("p", files=[str(tmp_path / "q.npy")])], cache=False).collect()
    assert df["p"].is_null().to_list() == [False] * 7 + [True, True, False]


@needs_heads
def test_heads_score_stored_unit_rows(demo_world, tmp_path):
    c = workbench.open_collection(demo_world)
    df = compute(c, [HeadScorer("nsfw", "nsfw-b32"), HeadScorer("aes", "aesthetic-v1-b32")], cache=False).collect()
    stored = all_rows(c).astype(np.float32)  # unit fp16 rows are fed as stored (the NSFW lookup sees fp16 values)
    np.testing.assert_allclose(df["aes"].to_numpy(), head("aesthetic-v1-b32")(stored), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(df["nsfw"].to_numpy(), head("nsfw-b32")(stored), atol=1e-5)
    assert df["nsfw"].min() >= 0 and df["nsfw"].max() <= 1
    # rows that are not unit (a dump that was not normalised) are normalised first
    root = make_embeddings(tmp_path / "c", rows=(40,), dim=512, dtype="float32")
    p = root / "img_emb" / "img_emb_0.npy"
    np.save(p, np.load(p) * 3)
    c3 = workbench.open_collection(root)
    got = compute(c3, [HeadScorer("aes", "aesthetic-v1-b32")], cache=False).collect()["aes"].to_numpy()
    np.testing.assert_allclose(got, head("aesthetic-v1-b32")(f64_unit(all_rows(c3)).astype(np.float32)), rtol=1e-4)


def test_similarity_from_embeddings_matches_the_metadata(demo_world):
    c = workbench.open_collection(demo_world)
    df = compute(c, [SimilarityScorer("sim")], cache=False).collect()
    meta = c.metadata.select("similarity").collect()["similarity"].to_numpy()
    np.testing.assert_allclose(df["sim"].to_numpy(), meta, atol=1e-5)


@needs_heads
def test_cache_is_reused_and_stale_shards_recomputed(demo_world, monkeypatch):
    c = workbench.open_collection(demo_world)
    scorers = lambda: [PromptScorer("p", texts=["a watermark"]), HeadScorer("h", "nsfw-b32")]  # noqa: E731
    first = compute(c, scorers())
    assert first.report["p"] == {**first.report["p"], "computed": 3, "cached": 0, "stale": 0}
    assert first.caches["p"].parent == demo_world / ".workbench" / "scores"
    values = first.collect()
    again = compute(workbench.open_collection(demo_world), scorers())
    assert again.report["p"]["cached"] == 3 and again.report["p"]["computed"] == 0
    assert again.collect().equals(values)
    # a changed source shard is detected (size/mtime stamp) and only that shard is scored again
    p = demo_world / "img_emb" / "img_emb_1.npy"
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    third = compute(workbench.open_collection(demo_world), scorers())
    assert (third.report["h"]["stale"], third.report["h"]["computed"], third.report["h"]["cached"]) == (1, 1, 2)
    assert third.collect().equals(values)
    # a damaged cache file counts as stale, never as an error
    (first.caches["p"] / "shard_00002.parquet").write_bytes(b"garbage")
    fourth = compute(workbench.open_collection(demo_world), scorers())
    assert fourth.report["p"]["stale"] == 1 and fourth.collect().equals(values)
    # other parameters are another cache entry
    other = compute(c, [PromptScorer("p", texts=["a watermark"], reduce="mean", negatives=["a cat"])])
    assert other.caches["p"] != first.caches["p"] and other.report["p"]["computed"] == 3


@needs_heads
def test_cache_can_live_elsewhere(demo_world, tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path / "cache"))
    c = workbench.open_collection(demo_world)
    res = compute(c, [HeadScorer("h", "nsfw-b32")])
    assert str(res.caches["h"]).startswith(str(tmp_path / "cache")) and not (demo_world / ".workbench").exists()
    assert compute(c, [HeadScorer("h", "nsfw-b32")]).report["h"]["cached"] == 3


@needs_heads
def test_bad_inputs_fail_before_any_work(demo_world, tmp_path):
    c = workbench.open_collection(demo_world)
    np.save(tmp_path / "q768.npy", np.ones(768, np.float32))
    with pytest.raises(ModelMismatchError, match="768-d but the collection's embeddings are 512-d"):
        compute(c, [HeadScorer("ok", "nsfw-b32"), PromptScorer("p", files=[str(tmp_path / "q768.npy")])])
    with pytest.raises(ModelMismatchError, match="768-d embeddings but this collection's are 512-d"):
        compute(c, [HeadScorer("h", "aesthetic-v2-l14")])
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(workbench.WorkbenchError, match="obj.npy"):
        compute(c, [PromptScorer("p", files=[str(tmp_path / "obj.npy")])])
    assert not (demo_world / ".workbench").exists()  # nothing was computed or cached


@needs_heads
def test_recipe_with_score_rules_replays_identically_from_its_file(demo_world, tmp_path):
    c = workbench.open_collection(demo_world)
    np.save(tmp_path / "dog.npy", DemoText(demo_world).encode_text(["a dog"])[0])
    r = Recipe.from_dict({"name": "mix", "rules": [
        {"caption_length": {"min_chars": 5}},
        {"prompt": "a watermark", "max": 0.2},
        {"prompt_embedding": str(tmp_path / "dog.npy"), "max": 0.3},
        {"head": "nsfw-b32", "below": 0.5},
        {"zero_shot": "laion400m-nsfw", "drop_tags": ["NSFW"]},
        {"dedup": "semantic", "threshold": 0.95},
        {"top_fraction": 0.8, "by": "similarity"},
    ]})
    sel = apply(c, r)
    assert 0 < sel.kept < len(c) and all(v["computed"] == 3 for v in sel.scores.values())
    r.save(tmp_path / "mix.yaml")
    again = apply(workbench.open_collection(demo_world), Recipe.load(tmp_path / "mix.yaml"))
    assert np.array_equal(again.kept_rows(), sel.kept_rows()) and np.array_equal(again.reason, sel.reason)
    assert all(v["cached"] == 3 for v in again.scores.values())
    # every rule removed something on this world
    assert (sel.counts()["removed_alone"] > 0).all()


def test_similarity_is_computed_when_the_metadata_lacks_it(tmp_path):
    root = make_embeddings(tmp_path / "c", rows=(50, 30), dim=16, metadata="laion5b")
    for p in (root / "metadata").glob("*.parquet"):  # laion5b_table has similarity: drop it
        pl.read_parquet(p).drop("similarity").write_parquet(p)
    c = workbench.open_collection(root)
    sel = apply(c, Recipe.from_dict({"rules": [{"column": "similarity", "min": 0.0}]}))
    x, t = f64_unit(all_rows(c)), f64_unit(all_rows(c, "text"))
    assert sel.kept == int(((x * t).sum(1) >= 0).sum()) and "similarity" in sel.scores


def test_preset_laion400m_needs_a_text_tower_for_real_collections(tmp_path):
    c = workbench.open_collection(make_embeddings(tmp_path / "c", rows=(5,), dim=16))
    with pytest.raises(workbench.WorkbenchError, match="--model"):
        apply(c, preset("laion400m"))


# -- engines: the per-shard work in worker processes -------------------------------------------------
@pytest.fixture(scope="module")
def pool():
    """Two spawned worker processes, shared by the engine tests (a pool costs a second or two to start)."""
    with make_engine("local", workers=2) as engine:
        yield engine


def _cache_files(world):
    return {str(p.relative_to(world)): p.read_bytes() for p in sorted((world / ".workbench").rglob("*.parquet"))}


@needs_heads
def test_an_engine_scores_and_caches_exactly_as_in_process(demo_world, pool):
    import shutil

    c = workbench.open_collection(demo_world)
    enc = DemoText(demo_world)

    def scorers():
        return [PromptScorer("p", texts=["a watermark", "a logo"], negatives=["a cat"], encoder=enc),
                PromptScorer("q", texts=["a dog"]), HeadScorer("h", "nsfw-b32"), SimilarityScorer("sim"),
                LanguageScorer(), Laion400mScorer(enc)]

    here = compute(c, scorers())
    values, files = here.collect(), _cache_files(demo_world)
    assert len(files) == 3 * 8  # 6 scorers' columns + image and text row norms, per shard
    assert compute(c, scorers(), cache=False, engine=pool).collect().equals(values)
    shutil.rmtree(demo_world / ".workbench")
    seen = []
    res = compute(workbench.open_collection(demo_world), scorers(), engine=pool,
                  progress=lambda done, total: seen.append((done, total)))
    assert all(r["computed"] == 3 and r["cached"] == 0 for r in res.report.values())
    assert seen[0] == (0, 3) and seen[-1] == (3, 3)
    assert res.collect().equals(values)
    assert _cache_files(demo_world) == files  # the same files, byte for byte
    again = compute(workbench.open_collection(demo_world), scorers(), engine=pool)
    assert all(r["cached"] == 3 and r["computed"] == 0 for r in again.report.values())
    assert again.collect().equals(values)
    # a changed shard: one task, for that shard only
    p = demo_world / "img_emb" / "img_emb_1.npy"
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    third = compute(workbench.open_collection(demo_world), scorers(), engine=pool)
    assert (third.report["h"]["stale"], third.report["h"]["computed"], third.report["h"]["cached"]) == (1, 1, 2)
    assert third.collect().equals(values)


@needs_heads
def test_scorers_pickle_without_their_text_tower(demo_world):
    import pickle

    c = workbench.open_collection(demo_world)
    enc = DemoText(demo_world)
    for s in (PromptScorer("p", texts=["a dog"], encoder=enc), Laion400mScorer(enc), SafetyScorer(enc)):
        s.prepare(c)
        copy = pickle.loads(pickle.dumps(s))
        assert copy.encoder is None and s.encoder is enc  # the driver's scorer keeps its encoder
        assert copy.spec() == s.spec()
    h = HeadScorer("h", "nsfw-b32")
    h.prepare(c)
    copy = pickle.loads(pickle.dumps(h))
    assert copy.head is None and copy._load().name == h.head.name  # loaded again where it runs


@needs_heads
def test_an_unpicklable_scorer_is_named_before_any_work(demo_world, pool):
    c = workbench.open_collection(demo_world)
    with pytest.raises(workbench.WorkbenchError, match="'h'.*without an engine"):
        compute(c, [HeadScorer("h", head("nsfw-b32"))], engine=pool)  # an in-memory head: a closure
    assert not (demo_world / ".workbench").exists()
    with make_engine("local", workers=1) as engine:  # one local worker scores in this process: no pickling
        assert compute(c, [HeadScorer("h", head("nsfw-b32"))], engine=engine, cache=False).collect().height == len(c)


@needs_heads
def test_apply_on_an_engine_selects_the_same_rows(demo_world, pool):
    r = Recipe.from_dict({"name": "mix", "rules": [
        {"prompt": "a watermark", "max": 0.2},
        {"head": "nsfw-b32", "below": 0.5},
        {"language": ["en"]},
        {"dedup": "semantic", "threshold": 0.95},
    ]})
    c = workbench.open_collection(demo_world)
    base = apply(c, r, cache=False)
    sel = apply(workbench.open_collection(demo_world), r, engine=pool)
    assert 0 < sel.kept < len(c)
    assert np.array_equal(sel.kept_rows(), base.kept_rows()) and np.array_equal(sel.reason, base.reason)
    assert all(v["computed"] == 3 for v in sel.scores.values())


@pytest.mark.parametrize("numba", [True, False])
def test_one_pass_gives_prompt_scores_and_row_norms_cold_or_warm(tmp_path, numba, monkeypatch):
    """fp16 stores: the compute pass gives every prompt's dots and, cold, the row norms at once. The
    scores equal float64 cosines to 1e-6 cold and warm (norms from the cache), with or without numba
    (without: torch's fp16 mv and the separate norm pass); rows holding inf, NaN or zeros get no score."""
    import workbench.io.kernels as k

    if not numba:
        monkeypatch.setattr(k, "_tried", True)
        monkeypatch.setattr(k, "_kernels", None)
    root = make_embeddings(tmp_path / "c", rows=(700, 300), dim=64)
    arr = np.load(root / "img_emb" / "img_emb_0.npy")
    arr[3, 5], arr[4, 0], arr[5] = np.inf, np.nan, 0
    np.save(root / "img_emb" / "img_emb_0.npy", arr)
    c = workbench.open_collection(root)
    q = unit_rows(2, 64, 3)
    np.save(tmp_path / "q.npy", q[0])
    np.save(tmp_path / "q2.npy", q)
    x = all_rows(c)
    with np.errstate(invalid="ignore", divide="ignore"):
        ref = (x / np.linalg.norm(x, axis=1, keepdims=True)) @ q.astype(np.float64).T
    scorers = lambda: [PromptScorer("a", files=[str(tmp_path / "q.npy")]),  # noqa: E731
                       PromptScorer("b", files=[str(tmp_path / "q2.npy")], reduce="mean")]
    cold = compute(c, scorers(), cache_dir=tmp_path / "cache").collect()
    warm = compute(c, scorers(), cache_dir=tmp_path / "cache", refresh=True).collect()  # norms read back
    for got in (cold, warm):
        assert got["a"][3:6].null_count() == 3 and got["a"].null_count() == 3
        ok = np.ones(len(c), bool)
        ok[3:6] = False
        tol = 1e-6 if numba else 2e-3  # torch's fp16 mv rounds its output to fp16
        np.testing.assert_allclose(got["a"].to_numpy()[ok], ref[ok, 0], atol=tol)
        np.testing.assert_allclose(got["b"].to_numpy()[ok], ref[ok].mean(axis=1), atol=tol)
    assert cold.equals(warm)
