"""Prompt vectors, LAION-400M's zero-shot NSFW rule and the safety concepts."""
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import workbench
from conftest import SHARED, make_embeddings, needs_shared, unit_rows
from workbench.models.heads import ModelMismatchError
from workbench.demo.textencoder import DemoText
from workbench.models.prompts import (PromptError, laion400m_prompts, laion400m_rule, load_prompt_embedding,
                               safety_concepts, safety_margin, text_encoder)
from workbench.scoring.scorers import Laion400mScorer, SafetyScorer
from workbench.scoring.compute import compute


def test_the_release_prompt_lists_load_with_their_quirks():
    p = laion400m_prompts()
    assert len(p.nsfw) == 35 and p.nsfw[5] == "animal, bird, mammal, insectfashion, clothes"  # the missing comma
    assert p.nsfw[18].startswith("porn") and p.safe_below == 19  # the off-by-one, kept
    raw = json.loads(Path(p.source).read_text())
    assert p.underage == raw["underaged_categories"] and p.animal == raw["animal_categories"]


def test_prompt_lists_and_safety_concepts_ship_with_the_package(monkeypatch, tmp_path):
    """Read from workbench/models/data by default (no heads folder, no outside folder needed)."""
    from workbench.models import promptheads, prompts

    monkeypatch.delenv("WORKBENCH_PROMPTS_DIR", raising=False)
    monkeypatch.setenv("WORKBENCH_HEADS_DIR", str(tmp_path / "nothing-here"))
    monkeypatch.setenv("WORKBENCH_OFFLINE", "1")
    data = Path(workbench.__file__).parent / "models" / "data"
    assert prompts.prompts_dir() == data and Path(laion400m_prompts().source).parent == data
    names, t, special, ts = safety_concepts()
    assert len(names) == 17 and len(special) == 6 and "safety_settings.yml" in str(promptheads.DATA / "safety_settings.yml")
    for f in ("laion400m_clip_filter_prompts.json", "safety_settings.yml", "safety_settings.LICENSE.md", "README.md"):
        assert (data / f).is_file(), f
    assert "MIT" in (data / "safety_settings.LICENSE.md").read_text()
    # the env override still works
    alt = tmp_path / "alt"
    alt.mkdir()
    (alt / "laion400m_clip_filter_prompts.json").write_text(json.dumps({"nsfw_categories": ["x"] * 35,
                                                                         "underaged_categories": [], "animal_categories": []}))
    monkeypatch.setenv("WORKBENCH_PROMPTS_DIR", str(alt))
    assert laion400m_prompts().nsfw == ["x"] * 35


@needs_shared("prompts", "heads/laion_nsfw_detector/safety_settings.yml")
def test_the_packaged_text_equals_the_reference_copies():
    data = Path(workbench.__file__).parent / "models" / "data"
    assert (data / "laion400m_clip_filter_prompts.json").read_bytes() == \
        (SHARED / "data" / "prompts" / "laion400m_clip_filter_prompts.json").read_bytes()
    assert (data / "safety_settings.yml").read_bytes() == \
        (SHARED / "data" / "heads" / "laion_nsfw_detector" / "safety_settings.yml").read_bytes()


def reference_rule(img, pn, pu, pa, captions):
    """The rule as the prompt file states it, written plainly, one row at a time."""
    tags, drops = [], []
    for x, cap in zip(img, captions):
        logits = 100 * (pn @ x)
        probs = np.exp(logits - logits.max())
        top2 = sorted(range(len(probs)), key=lambda i: (-probs[i], i))[:2]
        tag = "UNLIKELY" if all(i < 19 for i in top2) else "NSFW" if all(i >= 19 for i in top2) else "UNSURE"
        drop = False
        if tag != "UNLIKELY":
            u = sorted(range(len(pu)), key=lambda i: (-(pu[i] @ x), i))[:2]
            # the crawler's `any(x in df.at[i, "TEXT"] for x in underaged_text)`: case-sensitive
            drop = any(i < 4 for i in u) or any(w in (cap or "") for w in ("teen", "kid", "child", "baby"))
            drop = drop or int(np.argmax(pa @ x)) > 20
        tags.append(tag)
        drops.append(drop)
    return tags, drops


def test_rule_matches_a_plain_reimplementation():
    spec = laion400m_prompts()
    rng = np.random.default_rng(0)
    pn, pu, pa = (unit_rows(len(x), 24, s) for x, s in ((spec.nsfw, 1), (spec.underage, 2), (spec.animal, 3)))
    img = unit_rows(400, 24, 4)
    img[:50] = pn[25] + 0.1 * img[:50]  # some clearly NSFW rows
    img = img / np.linalg.norm(img, axis=1, keepdims=True)
    caps = [rng.choice(["a kid on a bike", "a photo", None, "BABY shower"]) for _ in range(400)]
    tags, drop = laion400m_rule(img, pn, pu, pa, caps, spec)
    ref_tags, ref_drop = reference_rule(img, pn, pu, pa, caps)
    assert tags.tolist() == ref_tags and drop.tolist() == ref_drop
    assert set(ref_tags) == {"UNLIKELY", "UNSURE", "NSFW"} and any(ref_drop)
    # "BABY shower" is not an under-age caption to the crawler; "a baby shower" is (a row the
    # under-age and animal prompts let through, so the caption alone decides)
    row = img[[np.flatnonzero(tags != "UNLIKELY")[0]]]
    pu_pass = np.zeros_like(pu)
    pu_pass[4], pu_pass[5] = row[0], 0.5 * row[0]  # the top-2 under-age prompts: indices 4 and 5 (not < 4)
    pa_pass = np.zeros_like(pa)  # top-1 animal prompt: index 0 (not > 20)
    by_caption = [laion400m_rule(row, pn, pu_pass, pa_pass, [cap], spec)[1][0]
                  for cap in ("a photo", "BABY shower", "a baby shower", "Kids party", "kids party")]
    assert by_caption == [False, False, True, False, True]


def test_scorer_reproduces_the_demo_worlds_release_tags(demo_world):
    """The demo world tagged its rows with the release's rule over its own encoder: the scorer agrees."""
    c = workbench.open_collection(demo_world)
    df = compute(c, [Laion400mScorer()], cache=False).collect()
    stored = c.metadata.select("nsfw_tag").collect()["nsfw_tag"].to_list()
    agree = np.mean([a == b for a, b in zip(df["laion400m_tag"].to_list(), stored)])
    assert agree > 0.999, agree  # float32 near-ties between prompts may flip a handful
    assert df["laion400m_drop"].sum() > 0
    # rows the rule drops are never UNLIKELY
    assert not df.filter(pl.col("laion400m_drop") & (pl.col("laion400m_tag") == "UNLIKELY")).height


def test_safety_margin_arithmetic():
    img = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], np.float32)
    c_nsfw = np.array([[1.0, 0.0, 0.0], [0.0, 0.6, 0.8]], np.float32)
    t_nsfw = np.array([0.5, 0.595], np.float32)
    c_special = np.array([[0.0, 0.0, 1.0]], np.float32)
    t_special = np.array([0.9], np.float32)
    m, idx = safety_margin(img, c_nsfw, t_nsfw, c_special, t_special)
    np.testing.assert_allclose(m, [0.5, 0.005, 0.8 - 0.595 + 0.01], atol=1e-6)  # special care lowers thresholds
    assert idx.tolist() == [0, 1, 1]
    names, t, special, ts = safety_concepts()
    assert "nude" in names and len(names) == len(t) and "little girl" in special and len(special) == len(ts)


def test_safety_scorer_flags_concept_images(demo_world):
    c = workbench.open_collection(demo_world)
    df = compute(c, [SafetyScorer()], cache=False).collect()
    assert df["safety_margin"].null_count() == 0 and df["safety_concept"].null_count() == 0
    from workbench.demo.build import load_ground_truth

    unsafe = load_ground_truth(demo_world)["is_unsafe"].to_numpy()
    flagged = df["safety_margin"].to_numpy() > 0
    assert flagged[unsafe].mean() > flagged[~unsafe].mean() * 3  # concept prompts find the unsafe rows


def test_prompt_embedding_files(tmp_path):
    np.save(tmp_path / "one.npy", np.array([3.0, 4.0], np.float16))
    v = load_prompt_embedding(tmp_path / "one.npy", 2)
    assert v.shape == (1, 2) and v.dtype == np.float32 and np.allclose(v, [[0.6, 0.8]])
    with pytest.raises(ModelMismatchError, match="2-d but the collection's embeddings are 512-d"):
        load_prompt_embedding(tmp_path / "one.npy", 512)
    np.save(tmp_path / "zero.npy", np.zeros((2, 2), np.float32))
    with pytest.raises(PromptError, match="zero.npy: row 0: .*zero, NaN"):
        load_prompt_embedding(tmp_path / "zero.npy", 2)
    (tmp_path / "text.npy").write_text("not an array")
    with pytest.raises(PromptError, match="text.npy"):
        load_prompt_embedding(tmp_path / "text.npy", 2)
    with pytest.raises(PromptError, match="no such"):
        load_prompt_embedding(tmp_path / "missing.npy", 2)


def test_text_encoder_is_found_or_asked_for(demo_world, tmp_path):
    enc = text_encoder(workbench.open_collection(demo_world))
    assert isinstance(enc, DemoText) and enc.dim == 512 and enc.identity["name"] == "demo-synthetic"
    emb = np.load(demo_world / "text_emb" / "text_emb_0.npy")[:3].astype(np.float32)
    caps = workbench.open_collection(demo_world).metadata.head(3).collect()["caption"].to_list()
    np.testing.assert_allclose(enc.encode_text(caps), emb, atol=1e-3)  # the stored text_emb
    c = workbench.open_collection(make_embeddings(tmp_path / "c", rows=(4,), dim=16))
    with pytest.raises(PromptError, match="--model"):
        text_encoder(c)
