import json

import numpy as np
import polars as pl
import pytest

import workbench
from workbench.errors import WorkbenchError
from workbench.papers.preference import PairRules, make_pairs, write_pairs
from workbench.models.prompts import text_encoder


@pytest.fixture
def world(demo_world):
    c = workbench.open_collection(demo_world)
    meta = c.metadata.select("row", "key", "caption").collect()
    return c, meta, text_encoder(c)


def _candidates(meta, rows, others):
    """For each image: its own caption (the right answer), and captions of other rows (wrong ones)."""
    recs = []
    for r, wrong in zip(rows.tolist(), [w.tolist() for w in others]):
        recs.append({"image": meta["key"][r], "prompt": "describe the image", "candidate": meta["caption"][r]})
        for w in wrong:
            recs.append({"image": meta["key"][r], "prompt": "describe the image", "candidate": meta["caption"][w]})
    return pl.DataFrame(recs)


def test_the_true_caption_is_chosen_and_every_rule_is_counted(world):
    c, meta, enc = world
    rng = np.random.default_rng(0)
    rows = rng.choice(len(c), 40, replace=False)
    cands = _candidates(meta, rows, [rng.choice(len(c), 3, replace=False) for _ in rows])
    res = make_pairs(c, cands, PairRules(min_margin=2.0, max_length_ratio=None), encoder=enc)
    pairs = res.pairs
    assert pairs.height > 0 and (pairs["margin"] >= 2.0).all()
    assert (pairs["chosen_score"] > pairs["rejected_score"]).all()
    own = dict(zip(meta["key"].to_list(), meta["caption"].to_list()))
    best = pairs.group_by("image").agg(pl.col("chosen").first(), pl.col("chosen_score").max())
    # the demo text encoder gives each row's own caption its stored text embedding: the true caption
    # usually wins (scores are not labels: partial/junk captions can lose)
    share = np.mean([own[k] == ch for k, ch in zip(best["image"], best["chosen"])])
    assert share > 0.6
    n = res.counts
    assert n["candidates"] == 160 and n["pairs"] == pairs.height
    assert n["pairs_considered"] == n["pairs"] + n["pairs_dropped: tie"] + n["pairs_dropped: margin below min"]
    # the scores are 100 x cosine of the stored (unit) embeddings
    r0 = int(rows[0])
    img = c.take_embeddings([r0])[0]
    txt = enc.encode_text([meta["caption"][r0]])[0]
    got = res.scores.filter((pl.col("row") == r0) & (pl.col("candidate") == meta["caption"][r0]))["score"][0]
    assert got == pytest.approx(100 * float(img @ txt / np.linalg.norm(txt)), abs=1e-3)


def test_length_score_and_text_rules(world, tmp_path):
    c, meta, enc = world
    key = meta["key"][5]
    cands = pl.DataFrame({"image": [key] * 4, "prompt": ["q"] * 4,
                          "candidate": [meta["caption"][5], "x", meta["caption"][9] + " and much more words " * 8,
                                        meta["caption"][11]]})
    base = make_pairs(c, cands, PairRules(min_margin=0.01, max_length_ratio=None), encoder=enc)
    short = make_pairs(c, cands, PairRules(min_margin=0.01, max_length=40, max_length_ratio=None), encoder=enc)
    assert short.counts["candidates_dropped: too long"] >= 1
    assert not short.pairs["chosen"].str.len_chars().gt(40).any()
    ratio = make_pairs(c, cands, PairRules(min_margin=0.01, max_length_ratio=1.5), encoder=enc)
    assert ratio.counts["pairs_dropped: length ratio"] > 0 and ratio.pairs.height < base.pairs.height
    floor = make_pairs(c, cands, PairRules(min_margin=0.01, min_score=1e9), encoder=enc)
    assert floor.pairs.height == 0 and floor.counts["candidates_dropped: below min score"] == 4
    texty = make_pairs(c, cands, PairRules(min_margin=0.01, text_prompt="a photo", text_max=-1e9), encoder=enc)
    assert texty.counts["images_with_text"] == 1 and texty.pairs.height == 0
    files = write_pairs(base, tmp_path / "out")
    lines = [json.loads(x) for x in (tmp_path / "out" / "pairs.jsonl").read_text().splitlines()]
    assert len(lines) == base.pairs.height and {"prompt", "chosen", "rejected"} <= set(lines[0])
    assert pl.read_parquet(files["pairs"]).equals(base.pairs)
    assert json.loads((tmp_path / "out" / "counts.json").read_text())["pairs"] == base.pairs.height


def test_given_embeddings_ties_and_bad_input(world):
    c, meta, _ = world
    img = c.take_embeddings([3])[0]
    same = [img.tolist(), img.tolist(), (-img).tolist()]
    cands = pl.DataFrame({"image": [3, 3, 3], "prompt": ["", "", ""], "candidate": ["a", "b", "c"], "embedding": same})
    res = make_pairs(c, cands, PairRules(min_margin=1.0, max_length_ratio=None))
    assert res.counts["pairs_dropped: tie"] == 1 and res.pairs.height == 2  # a~b tie; a>c, b>c
    assert set(res.pairs["rejected"]) == {"c"}
    with pytest.raises(WorkbenchError, match="not a row"):
        make_pairs(c, cands.with_columns(pl.lit(10**9).alias("image")), PairRules())
    with pytest.raises(WorkbenchError, match="not a key"):
        make_pairs(c, cands.with_columns(pl.lit("no-such-key").alias("image")), PairRules())
    with pytest.raises(WorkbenchError, match="text encoder"):
        make_pairs(c, cands.drop("embedding"), PairRules())
    with pytest.raises(WorkbenchError, match="ties never"):
        make_pairs(c, cands, PairRules(min_margin=0))
