"""The synthetic demo world: layout, determinism, geometry, detectors and ground truth agree."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import mmh3
import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import workbench
from workbench.demo.build import (
    CONCEPTS,
    LAION400M_NSFW_PROMPTS,
    VOCABULARY,
    DemoTextEncoder,
    build_demo_world,
    default_rows_per_shard,
    load_ground_truth,
    summarize_world,
)
from workbench.errors import WriteError
from workbench.io.verify import verify

REPO = Path(__file__).resolve().parents[2]
ROWS, RPS = 12_000, 5_000  # 3 shards (5k, 5k, 2k) over 2 generation blocks of 10k


def numbered(folder: Path, prefix: str, suffix: str) -> list[Path]:
    return sorted(folder.glob(f"{prefix}*{suffix}"), key=lambda p: int(p.name[len(prefix):-len(suffix)]))


def data_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "manifest.json"}


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float32), b.astype(np.float32)
    return (a * b).sum(1) / (np.sqrt((a * a).sum(1)) * np.sqrt((b * b).sum(1)))


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return build_demo_world(tmp_path_factory.mktemp("demo") / "world", rows=ROWS, seed=0, rows_per_shard=RPS)


@pytest.fixture(scope="module")
def truth(world) -> pl.DataFrame:
    return load_ground_truth(world)


@pytest.fixture(scope="module")
def meta(world) -> pl.DataFrame:
    return pl.concat([pl.read_parquet(p) for p in numbered(world / "metadata", "metadata_", ".parquet")])


@pytest.fixture(scope="module")
def img(world) -> np.ndarray:
    return np.concatenate([np.load(p) for p in numbered(world / "img_emb", "img_emb_", ".npy")])


@pytest.fixture(scope="module")
def txt(world) -> np.ndarray:
    return np.concatenate([np.load(p) for p in numbered(world / "text_emb", "text_emb_", ".npy")])


@pytest.fixture(scope="module")
def encoder(world) -> DemoTextEncoder:
    return DemoTextEncoder(world)


# -- layout ------------------------------------------------------------------------------------
def test_laion_layout_with_manifest_world_files_and_truth(world):
    for sub, pre, suf in (("img_emb", "img_emb_", ".npy"), ("text_emb", "text_emb_", ".npy"),
                          ("metadata", "metadata_", ".parquet"), ("ground_truth", "truth_", ".parquet")):
        assert [p.name for p in numbered(world / sub, pre, suf)] == [f"{pre}{i}{suf}" for i in range(3)]
    info = json.loads((world / "world" / "world.json").read_text())
    assert info["synthetic"] is True and "synthetic" in info["what"]
    assert info["parameters"]["rows"] == ROWS and info["concepts"] == list(CONCEPTS)
    assert np.load(world / "world" / "concepts.npy").shape == (len(CONCEPTS), 512)
    assert np.load(world / "world" / "offsets.npy").shape == (2, 512)
    manifest = json.loads((world / "manifest.json").read_text())
    assert manifest["rows"] == ROWS and [s["rows"] for s in manifest["shards"]] == [5000, 5000, 2000]
    assert manifest["model"]["name"] == "demo-synthetic" and manifest["parameters"]["synthetic"] is True
    extras = {f["path"] for f in manifest["extra_files"]}
    assert {"world/world.json", "world/concepts.npy", "world/offsets.npy", "ground_truth/truth_2.parquet"} <= extras
    assert verify(world).ok
    c = workbench.open_collection(world)
    assert (len(c), c.dim, c.layout, c.has_text_embeddings) == (ROWS, 512, "embeddings", True)
    assert c.model_identity["name"] == "demo-synthetic"


def test_default_rows_per_shard():
    assert default_rows_per_shard(100_000) == 10_000
    assert default_rows_per_shard(3_000) == 10_000
    assert default_rows_per_shard(10_000_000) == 1_000_000
    assert default_rows_per_shard(50_000_000) == 1_000_000


def test_metadata_columns(meta):
    assert meta.columns == ["url", "caption", "key", "similarity", "punsafe", "pwatermark", "NSFW", "width", "height",
                            "hash"]
    assert meta.schema["similarity"] == pl.Float64
    assert meta.schema["punsafe"] == pl.Float32 and meta.schema["pwatermark"] == pl.Float32
    assert meta.schema["width"].is_integer() and meta.schema["hash"] == pl.Int64
    assert meta["url"].str.starts_with("https://synthetic.invalid/").all()
    assert set(meta["NSFW"].unique()) <= {"UNLIKELY", "UNSURE", "NSFW"}
    keys = meta["key"].to_list()
    assert keys[:2] == ["000000000", "000000001"] and keys[10_001] == "000010001"
    assert all(len(k) == 9 for k in keys)
    rows = meta.sample(500, seed=1)
    assert rows["hash"].to_list() == [mmh3.hash64(u + c)[0] for u, c in zip(rows["url"], rows["caption"])]
    w, h = meta["width"].to_numpy(), meta["height"].to_numpy()
    assert 300 < np.median(w) < 800 and 0.02 < (np.minimum(w, h) < 200).mean() < 0.25


# -- determinism and reuse -----------------------------------------------------------------------
def test_same_parameters_give_identical_files(tmp_path):
    a = build_demo_world(tmp_path / "a", rows=2_500, seed=7, rows_per_shard=1_000, dim=256)
    b = build_demo_world(tmp_path / "b", rows=2_500, seed=7, rows_per_shard=1_000, dim=256)
    assert data_files(a) == data_files(b) and len(data_files(a)) == 3 * 4 + 3
    ma, mb = (json.loads((p / "manifest.json").read_text()) for p in (a, b))
    ma.pop("created"), mb.pop("created")
    assert ma == mb
    assert np.load(a / "img_emb" / "img_emb_0.npy").shape == (1000, 256)
    c = build_demo_world(tmp_path / "c", rows=2_500, seed=8, rows_per_shard=1_000, dim=256)
    assert (a / "img_emb" / "img_emb_0.npy").read_bytes() != (c / "img_emb" / "img_emb_0.npy").read_bytes()


def test_rows_do_not_depend_on_shard_size(tmp_path, world, img, meta):
    other = build_demo_world(tmp_path / "w", rows=ROWS, seed=0, rows_per_shard=7_000)
    np.testing.assert_array_equal(np.load(other / "img_emb" / "img_emb_0.npy"), img[:7_000])
    assert pl.read_parquet(other / "metadata" / "metadata_1.parquet")["caption"].to_list() == \
        meta["caption"][7_000:].to_list()


def test_rebuilding_the_same_world_is_a_no_op(world):
    before = {p: p.stat().st_mtime_ns for p in world.rglob("*") if p.is_file()}
    t0 = time.perf_counter()
    assert build_demo_world(world, rows=ROWS, seed=0, rows_per_shard=RPS) == world
    assert time.perf_counter() - t0 < 2.0
    assert {p: p.stat().st_mtime_ns for p in world.rglob("*") if p.is_file()} == before


def test_refuses_other_worlds_and_foreign_folders(world, tmp_path):
    with pytest.raises(WriteError, match="different synthetic demo world") as e:
        build_demo_world(world, rows=ROWS, seed=1, rows_per_shard=RPS)
    assert str(world) in str(e.value)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(WriteError) as e:
        build_demo_world(foreign, rows=1_000)
    assert str(foreign) in str(e.value)
    assert (foreign / "notes.txt").read_text() == "keep me" and len(list(foreign.iterdir())) == 1


def test_an_interrupted_build_is_started_again(tmp_path):
    out = build_demo_world(tmp_path / "w", rows=2_000, seed=3, rows_per_shard=1_000, dim=128)
    files = data_files(out)
    (out / "manifest.json").unlink()  # as if the build had stopped before finishing
    (out / "img_emb" / "img_emb_1.npy").unlink()
    assert build_demo_world(out, rows=2_000, seed=3, rows_per_shard=1_000, dim=128) == out
    assert data_files(out) == files and verify(out).ok


def test_bad_arguments(tmp_path):
    with pytest.raises(WriteError):
        build_demo_world(tmp_path / "x", rows=0)
    with pytest.raises(WriteError):
        build_demo_world(tmp_path / "y", rows=10, dim=16)


# -- geometry -----------------------------------------------------------------------------------
def test_embeddings_are_unit_norm_float16(img, txt):
    assert img.dtype == np.float16 and txt.dtype == np.float16
    for arr in (img, txt):
        n = np.linalg.norm(arr.astype(np.float32), axis=1)
        assert np.abs(n - 1).max() < 2e-3


def test_similarity_is_the_cosine_of_the_stored_embeddings(img, txt, meta):
    np.testing.assert_allclose(meta["similarity"].to_numpy(), cosine(img, txt), rtol=0, atol=1e-6)


def test_similarity_distribution_is_laion_like(meta, truth):
    sim = meta["similarity"].to_numpy()
    kind = truth["caption_kind"].to_numpy()
    assert 0.27 <= sim.mean() <= 0.34
    matched, mismatched = sim[kind == "matched"], sim[kind == "mismatched"]
    assert 0.30 <= matched.mean() <= 0.34 and 0.025 <= matched.std() <= 0.05
    assert 0.09 <= mismatched.mean() <= 0.16 and mismatched.mean() < matched.mean() - 0.15
    assert sim[kind == "junk"].mean() < 0.16
    assert matched.mean() > sim[kind == "partial"].mean() > mismatched.mean()
    assert 0.4 < (sim >= 0.3).mean() < 0.75


def test_modality_gap(img, txt):
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, len(img), 3000), rng.integers(0, len(img), 3000)
    img_img, txt_txt = cosine(img[a], img[b]).mean(), cosine(txt[a], txt[b]).mean()
    assert img_img > 0.35 and txt_txt > 0.5 and cosine(img[a], txt[b]).mean() < 0.16


# -- the text encoder ---------------------------------------------------------------------------
def test_stored_text_emb_equals_encode(world, txt, meta):
    encoder = DemoTextEncoder(world)
    caps = meta["caption"].to_list()
    np.testing.assert_array_equal(encoder.encode(caps).astype(np.float16), txt)
    one_by_one = np.stack([DemoTextEncoder(world).encode([c])[0] for c in caps[:200]])
    np.testing.assert_array_equal(one_by_one.astype(np.float16), txt[:200])
    out = encoder.encode(["a photo of a cat"])
    assert out.shape == (1, encoder.dim) and encoder.dim == 512 and out.dtype == np.float32


_WORDS = sorted(VOCABULARY) + ["the", "of", "zebra", "IMG_2391", "<b>", "&amp;", "qwerty", "3d"]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.sampled_from(_WORDS), max_size=8).map(" ".join), min_size=1, max_size=12))
def test_encoder_rows_do_not_depend_on_the_batch(encoder, texts):
    batch = encoder.encode(texts)
    for i, t in enumerate(texts):
        np.testing.assert_array_equal(encoder.encode([t])[0], batch[i])
    assert np.all(np.abs(np.linalg.norm(batch, axis=1) - 1) < 1e-5)


def _top(img, encoder, prompt, k):
    scores = img.astype(np.float32) @ encoder.encode([prompt])[0]
    return np.argsort(-scores)[:k], scores


def test_prompts_retrieve_their_concept(img, truth, encoder):
    top, scores = _top(img, encoder, "a photo of a cat", 100)
    is_cat = truth["objects"].list.contains("cat").to_numpy()
    assert is_cat[top].mean() >= 0.9
    assert scores[is_cat].mean() > scores[~is_cat].mean() + 0.08
    top, _ = _top(img, encoder, "a watermark", 100)
    assert truth["has_watermark"].to_numpy()[top].mean() >= 0.9
    top, _ = _top(img, encoder, "a child", 100)
    assert truth["has_child"].to_numpy()[top].mean() >= 0.9
    top, _ = _top(img, encoder, "nsfw", 100)
    assert truth["is_unsafe"].to_numpy()[top].mean() >= 0.9
    top, _ = _top(img, encoder, "an oil painting", 100)
    assert (truth["style"].to_numpy()[top] == "painting").mean() >= 0.9


@pytest.mark.parametrize("prompt, concepts", [
    ("porn, sex, sperm, nipples", {"unsafe_explicit"}),
    ("hentai", {"unsafe_explicit"}),
    ("sexy, hot", {"unsafe_explicit"}),
    ("toys, play, kids, children", {"child", "toy"}),
    ("baby, toddler", {"child"}),
    ("teenager, teen", {"child"}),
    ("teddy bear, puppet", {"teddy bear", "toy"}),
    ("animal, bird, mammal, insectfashion, clothes", {"animal", "bird"}),
    ("drawing, painting", {"sketch", "painting", "artwork"}),
    ("anime, cartoon", {"cartoon"}),
    ("illustration, drawing", {"cartoon", "sketch", "artwork"}),
    ("logo, commercial, ad, advertisement", {"text overlay"}),
    ("horror, monster movie", {"unsafe_gore"}),
    ("adult, woman, man, grownup, grown person,full-aged of legal age", {"person"}),
    ("horse", {"horse"}),
    ("rock, stone", {"mountain"}),
])
def test_release_prompt_words_map_to_concepts(encoder, prompt, concepts):
    weights = encoder.encode([prompt])[0] @ encoder.concepts.T
    assert encoder.concept_names[int(np.argmax(weights))] in concepts


def test_laion400m_nsfw_prompts_match_the_shared_list(shared_data):
    spec = json.loads((shared_data / "prompts" / "laion400m_clip_filter_prompts.json").read_text())
    assert list(LAION400M_NSFW_PROMPTS) == spec["nsfw_categories"]


def test_nsfw_column_is_the_laion400m_zero_shot_rule(img, meta, truth, encoder):
    prompts = encoder.encode(list(LAION400M_NSFW_PROMPTS))
    x = img.astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    top2 = np.argsort(-(100 * x @ prompts.T), axis=1)[:, :2]
    safe_count = (top2 < 19).sum(1)
    tag = np.where(safe_count == 2, "UNLIKELY", np.where(safe_count == 0, "NSFW", "UNSURE"))
    assert (tag == meta["NSFW"].to_numpy()).mean() > 0.999
    kind = truth["unsafe_kind"].to_numpy()
    col = meta["NSFW"].to_numpy()
    assert (col[kind == "explicit"] == "NSFW").mean() > 0.5  # consistent with the truth ...
    assert 0.0 < (col[kind == "explicit"] == "UNLIKELY").mean() < 0.3  # ... but noisy, as in the release
    assert (col[kind == None] == "UNLIKELY").mean() > 0.95  # noqa: E711


# -- detectors against the truth ----------------------------------------------------------------
def _precision_recall(flag: np.ndarray, true: np.ndarray) -> tuple[float, float]:
    return (flag & true).sum() / flag.sum(), (flag & true).sum() / true.sum()


def test_punsafe_tracks_the_unsafe_truth(meta, truth):
    flag = meta["punsafe"].to_numpy() > 0.5
    p, r = _precision_recall(flag, truth["is_unsafe"].to_numpy())
    assert p > 0.85 and r > 0.8 and 0.02 < flag.mean() < 0.045
    person_beach = (truth["has_person"] & (truth["scene"] == "beach") & ~truth["is_unsafe"]).to_numpy()
    safe_plain = (~truth["has_person"] & ~truth["is_unsafe"]).to_numpy()
    pu = meta["punsafe"].to_numpy()
    assert np.median(pu[person_beach]) > 5 * np.median(pu[safe_plain])  # confounders sit higher


def test_pwatermark_tracks_the_watermark_truth(meta, truth):
    flag = meta["pwatermark"].to_numpy() > 0.8
    p, r = _precision_recall(flag, truth["has_watermark"].to_numpy())
    assert p > 0.85 and r > 0.8 and 0.035 < flag.mean() < 0.07


# -- ground truth ------------------------------------------------------------------------------
def test_ground_truth_rows_and_columns(truth):
    assert truth["row"].to_list() == list(range(ROWS))
    for col in ("objects", "scene", "style", "concepts", "is_unsafe", "unsafe_kind", "has_watermark", "has_child",
                "caption_kind", "dup_group", "dup_of", "exact_dup"):
        assert col in truth.columns
    assert truth.schema["dup_group"] == pl.Int64 and truth.schema["objects"] == pl.List(pl.String)
    assert (truth["is_unsafe"] == truth["unsafe_kind"].is_not_null()).all()
    assert not (truth["has_child"] & truth["is_unsafe"]).any()
    assert set(truth["caption_kind"].unique()) == {"matched", "partial", "mismatched", "junk"}
    both = truth.select(pl.col("objects").list.set_difference("concepts").list.len().alias("n"))
    assert (both["n"] == 0).all()
    share = lambda m: float(m.mean())  # noqa: E731
    assert 0.02 < share(truth["is_unsafe"]) < 0.045
    assert 0.035 < share(truth["has_watermark"]) < 0.07
    assert 0.08 < share(truth["caption_kind"] == "mismatched") < 0.12


def test_captions_cover_the_rules(meta, truth):
    caps = meta["caption"]
    junk = truth["caption_kind"] == "junk"
    assert (caps.str.len_chars() < 5).sum() > 50 and (caps.filter(junk).str.len_chars() < 5).any()
    assert caps.str.contains("<script>", literal=True).any() and caps.str.contains("&amp;", literal=True).any()
    unsafe = truth["is_unsafe"].to_numpy()
    explicit = (truth["unsafe_kind"] == "explicit").fill_null(False).to_numpy()
    lower = caps.str.to_lowercase()
    keyword = (lower.str.contains("sexy") | lower.str.contains("xxx") | lower.str.contains("nsfw")
               | lower.str.contains("adult") | lower.str.contains("hot ")).to_numpy()
    assert 0.3 < keyword[explicit].mean() < 0.8 and (keyword & ~unsafe).sum() > 0  # keyword filters miss and over-fire


def test_duplicates(truth, img, txt, meta):
    copies = truth.filter(pl.col("dup_of") >= 0)
    row, src = copies["row"].to_numpy(), copies["dup_of"].to_numpy()
    assert (src < row).all() and (copies["dup_group"] == copies["dup_of"]).all()
    assert (truth["dup_group"].to_numpy()[src] == src).all()  # a source is the id of its group
    sizes = truth.filter(pl.col("dup_group") >= 0).group_by("dup_group").len()["len"]
    assert (sizes >= 2).all()
    near = ~copies["exact_dup"].to_numpy()
    assert cosine(img[row[near]], img[src[near]]).min() >= 0.96
    exact = copies["exact_dup"].to_numpy()
    urls, caps = meta["url"].to_numpy(), meta["caption"].to_numpy()
    assert (urls[row[exact]] == urls[src[exact]]).all() and (caps[row[exact]] == caps[src[exact]]).all()
    np.testing.assert_array_equal(img[row[exact]], img[src[exact]])
    np.testing.assert_array_equal(txt[row[exact]], txt[src[exact]])
    assert (urls[row[near]] != urls[src[near]]).all()
    assert (row // RPS != src // RPS).any()  # some duplicates cross shards
    assert 0.012 < near.sum() / ROWS < 0.03 and 0.002 < exact.sum() / ROWS < 0.01
    same = truth.select("objects", "scene", "style", "is_unsafe", "has_watermark")
    assert same[row.tolist()].equals(same[src.tolist()])  # same concepts


def test_summary_lines_say_synthetic(world):
    lines = summarize_world(world)
    assert len(lines) >= 8 and all("synthetic" in line for line in lines)
    text = "\n".join(lines)
    for word in ("punsafe", "pwatermark", "duplicate", "similarity", "mismatched", "watermark", "unsafe"):
        assert word in text


# -- resources ----------------------------------------------------------------------------------
_PEAK = """
import resource, sys
from workbench.demo.build import build_demo_world
build_demo_world(sys.argv[1], rows=int(sys.argv[2]), rows_per_shard=int(sys.argv[3]))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
print('torch' in sys.modules)
"""


def _peak_kib(out: Path, rows: int, rps: int) -> tuple[int, bool]:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    res = subprocess.run([sys.executable, "-c", _PEAK, str(out), str(rows), str(rps)], capture_output=True, text=True,
                         env=env, check=True)
    peak, torch = res.stdout.split()
    return int(peak), torch == "True"


def test_memory_stays_bounded_and_torch_is_never_imported(tmp_path):
    small, torch = _peak_kib(tmp_path / "small", 20_000, 20_000)
    assert not torch
    t0 = time.perf_counter()
    large, _ = _peak_kib(tmp_path / "large", 200_000, 20_000)
    took = time.perf_counter() - t0
    assert large - small < 150 * 1024, f"peak RSS grew {(large - small) / 1024:.0f} MiB from 20k to 200k rows"
    assert took < 60, f"200k rows took {took:.0f} s"
