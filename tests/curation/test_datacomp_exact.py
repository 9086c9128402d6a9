"""The datacomp-* presets select exactly the uids DataComp's own code selects (mlfoundations/datacomp,
``baselines/apply_filter.py``), on pools built to stress the edges: ties at the top-30% cut, NaN
scores, non-breaking spaces and the control separators U+001C-U+001F, newlines and tabs, empty and
all-caps captions, captions longer than 80 characters, inflected words, uids with leading zeros,
shards in a shuffled order.

The reference below is DataComp's logic re-written from its code with numpy in place of pandas (same
expressions: ``str.split()``, ``len``, ``text.replace("\\n", " ")`` before fastText, ``int(len * f)``
and ``-np.sort(-x)[n]``, ``>=``), the same fastText model on both sides (lid.176.ftz), gcld3 (cld3-py)
for the LAION-2B baseline, and NLTK 3.8.1's own WordNet reader for the text-based one.
"""
from __future__ import annotations

import os
import random
import string

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import workbench
from workbench.curation.apply import apply, apply_and_export
from workbench.curation.datacomp import fasttext_token_count, read_torch_array
from workbench.curation.recipe import Recipe, preset
from workbench.errors import WorkbenchError
from workbench.scoring.scorers import fasttext_lid

STRESS = [
    "", " ", "a", "dog", "a dog", "a red dog", "A RED DOG ON THE BEACH AT SUNSET", "DOG",
    "a\u00a0red\u00a0dog", "a\x1cred\x1ddog\x1e!", "two\x1fwords here", "line one\nline two dog", "\n\n\n\n\n\n",
    "tab\tseparated\tcaption\tof a cat", "geese crossing the road", "running shoes for men", "Dogs, cats.",
    "une photo d'un chien sur la plage", "ein Hund im Park bei Sonnenschein", "un perro en la playa",
    "Photo of a golden retriever puppy playing in the grass at the park, with a red ball " * 2,
    "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG AND KEEPS RUNNING", "sale!!! 50% off", "12345 67890",
    "a cup of coffee\r\non a wooden table", "hot_dog stand", "\u00a0\u00a0\u00a0\u00a0\u00a0\u00a0",
    "pizza", "Beautiful SUNSET over the ocean waves", "\x1c \x1d \x1e \x1f", "x" * 200, "ok ok",
]
WORDS = ["dog", "cat", "tree", "car", "house", "beach", "ran", "better", "the", "a", "photo", "geese", "mice",
         "running", "oranges", "churches", "wolves", "boxes", "women", "Pizza", "GUITAR", "xyzzy", "of", "on"]


def _caption(rng: random.Random) -> str:
    if rng.random() < 0.35:
        return rng.choice(STRESS)
    seps = [" ", " ", " ", "  ", "\u00a0", "\x1c", "\t", "\n", "\u2003"]
    words = [rng.choice(WORDS) if rng.random() < 0.7 else "".join(rng.choices(string.ascii_letters, k=rng.randint(1, 8)))
             for _ in range(rng.randint(0, 9))]
    out = ""
    for w in words:
        out += (rng.choice(seps) if out else "") + w
    return out.upper() if rng.random() < 0.1 else out


def make_pool(root, rows=(300, 0, 250, 280), seed=0, dims=(("l14", 768), ("b32", 512))):
    """A DataComp pool: ``<stem>.parquet`` (uid, text, sizes, both similarity columns) + ``<stem>.npz``.
    Scores come from a few values, so the top-30% cut falls inside a tie; one row in 40 has a NaN L/14
    score; uids are 32 hex digits, many with leading zeros."""
    rng, nrng = random.Random(seed), np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i, n in enumerate(rows):
        stem = f"{i:08d}"
        uids = [f"{int(nrng.integers(0, 2 ** 62)) >> int(nrng.integers(0, 60)):032x}" for _ in range(n)]
        l14 = nrng.choice(np.array([0.18, 0.21, 0.25, 0.27, 0.3, 0.33], np.float32), n)
        l14[nrng.random(n) < 0.025] = np.nan
        b32 = nrng.choice(np.array([0.2, 0.25, 0.2500001, 0.28, 0.2799999, 0.31], np.float32), n)
        w = nrng.choice([0, 150, 199, 200, 256, 600, 601, 1000], n)
        h = nrng.choice([0, 200, 201, 300, 67, 66, 1800], n)
        pq.write_table(pa.table({
            "uid": uids, "url": [f"https://synthetic.invalid/{u}.jpg" for u in uids],
            "text": [_caption(rng) for _ in range(n)],
            "original_width": pa.array(w, pa.int64()), "original_height": pa.array(h, pa.int64()),
            "clip_b32_similarity_score": pa.array(b32, pa.float32()),
            "clip_l14_similarity_score": pa.array(l14, pa.float32()),
        }), root / f"{stem}.parquet")
        arrays = {}
        for m, d in dims:
            x = nrng.standard_normal((n, d)).astype(np.float32)
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            arrays[f"{m}_img"] = x.astype(np.float16)
            arrays[f"{m}_txt"] = x[:, ::-1].copy().astype(np.float16)
        np.savez(root / f"{stem}.npz", **arrays)
    return root


def read_pool(root):
    """The pool as DataComp's workers read it: every parquet (and npz) of the folder."""
    parts = [pq.read_table(p).to_pydict() for p in sorted(root.glob("*.parquet"))]
    df = {k: sum((p[k] for p in parts), []) for k in parts[0]}
    df["l14_img"] = np.concatenate([np.load(p)["l14_img"] for p in sorted(root.glob("*.npz"))])
    return df


# -- DataComp's reference logic ----------------------------------------------------------------------------------------
def uid_pair(uid):
    return int(uid[:16], 16), int(uid[16:32], 16)


def ref_fasttext_language(text, model):  # get_fasttext_language
    text = text.replace("\n", " ")
    return model.predict(text)[0][0].split("__label__")[1]


def ref_basic(df, model):  # load_uids_with_basic_filter_helper
    keep = set()
    for uid, text, w, h in zip(df["uid"], df["text"], df["original_width"], df["original_height"]):
        english = ref_fasttext_language(text, model) == "en"
        caption = len(text.split()) > 2 and len(text) > 5
        lo, hi = min(w, h), max(w, h)
        with np.errstate(divide="ignore", invalid="ignore"):
            aspect = np.float64(hi) / np.float64(lo)
        if english and caption and lo >= 200 and aspect <= 3.0:
            keep.add(uid_pair(uid))
    return keep


def ref_threshold(values, fraction):  # get_threshold
    n = int(len(values) * fraction)
    return -np.sort(-np.asarray(values, np.float32))[n]


def ref_clip_score(df, key, threshold=None, fraction=None):  # load_uids_with_clip_score(_helper)
    if threshold is None:
        threshold = ref_threshold(df[key], fraction)
    x = np.asarray(df[key], np.float32)
    return {uid_pair(u) for u, keep in zip(df["uid"], x >= np.float32(threshold)) if keep}


def ref_laion2b(df):  # the laion2b branch: gcld3 English, then B/32 >= 0.28
    import gcld3

    ident = gcld3.NNetLanguageIdentifier(min_num_bytes=0, max_num_bytes=1000)
    x = np.asarray(df["clip_b32_similarity_score"], np.float32)
    return {uid_pair(u) for u, t, s in zip(df["uid"], df["text"], x)
            if ident.FindLanguage(text=t.replace("\n", " ")).language == "en" and s >= np.float32(0.28)}


def ref_text_based(df, model, wordnet, entity_set):  # load_uids_with_text_entity_helper
    def does_contain_text_entity(text):
        for word in text.split():
            synsets = wordnet.synsets(word)
            if len(synsets) == 0:
                continue
            if synsets[0].offset() in entity_set:
                return True
        return False

    return {uid_pair(u) for u, t in zip(df["uid"], df["text"])
            if ref_fasttext_language(t, model) == "en" and does_contain_text_entity(t)}


def ref_tokenize(text):
    """fastText's ``tokenize``: ``Dictionary::readWord`` over the UTF-8 bytes (separators space, \\n, \\r, \\t,
    \\v, \\f, \\0; an empty word at a newline is the end-of-sentence token)."""
    out, word, data, i = [], b"", text.encode(), 0
    while i < len(data):
        c = data[i:i + 1]
        i += 1
        if c in (b" ", b"\n", b"\r", b"\t", b"\v", b"\f", b"\0"):
            if not word:
                if c == b"\n":
                    out.append("</s>")
                continue
            out.append(word.decode(errors="replace"))
            word = b""
            if c == b"\n":
                i -= 1
            continue
        word += c
    if word:
        out.append(word.decode(errors="replace"))
    return out


def ref_image_based(df, model, centroids, target, threshold_key=None, fraction=None):
    """image_filter_helper with get_centroid_ids_gpu (float32 dot products, argmax)."""
    keep_rows = np.ones(len(df["uid"]), bool)
    if threshold_key is not None:
        keep_rows = np.asarray(df[threshold_key], np.float32) >= ref_threshold(df[threshold_key], fraction)
    target_ids = np.unique(np.argmax(target.astype(np.float32) @ centroids.T, axis=1))
    out = set()
    for i in np.flatnonzero(keep_rows):
        t = df["text"][i]
        if not (ref_fasttext_language(t, model) == "en" and len(ref_tokenize(t)) > 1 and len(t) > 5):
            continue
        label = int(np.argmax(df["l14_img"][i].astype(np.float32) @ centroids.T))
        if label in target_ids:
            out.add(uid_pair(df["uid"][i]))
    return out


# -- the workbench's side ----------------------------------------------------------------------------------------------
def kept_uids(c, recipe):
    sel = apply(c, recipe)
    uids = c.metadata.select("uid").collect()["uid"].to_list()
    return {uid_pair(uids[r]) for r in sel.kept_rows()}


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    root = make_pool(tmp_path_factory.mktemp("dc") / "pool")
    return root, read_pool(root)


@pytest.mark.parametrize("model", ["l14", "b32"])
def test_basic_clip_score_and_b32_presets_equal_datacomp_code(pool, model):
    root, df = pool
    c = workbench.open_collection(root, model=model)  # the model the pool is opened with changes nothing
    ft = fasttext_lid()
    want = {
        "datacomp-basic": ref_basic(df, ft),
        "datacomp-clip-score": ref_clip_score(df, "clip_l14_similarity_score", fraction=0.3),
        "datacomp-clip-score-b32": ref_clip_score(df, "clip_b32_similarity_score", threshold=0.25),
    }
    for name, uids in want.items():
        assert 0 < len(uids) < len(df["uid"]), name
        assert kept_uids(c, preset(name)) == uids, name
    # the cut fell inside a tie: DataComp keeps more than int(n * 0.3) rows, the workbench's own cut exactly ceil
    n = len(df["uid"])
    assert len(want["datacomp-clip-score"]) > int(n * 0.3)
    c_sim = workbench.open_collection(root, model="l14")
    finite = int(np.isfinite(np.asarray(df["clip_l14_similarity_score"], np.float32)).sum())
    assert apply(c_sim, preset("workbench-clip-score")).kept == int(np.ceil(finite * 0.3))


def test_the_apply_report_names_the_model_of_every_score(pool):
    root, _ = pool
    for model, name in (("l14", "ViT-L-14"), ("b32", "ViT-B-32")):
        c = workbench.open_collection(root, model=model)
        rep = apply_and_export(c, preset("datacomp-clip-score-b32"))["report"]
        assert rep["score_models"] == {"clip_b32_similarity_score": "ViT-B-32 (DataComp's metadata)"}
        rep = apply_and_export(c, Recipe.from_dict({"name": "s", "rules": [{"column": "similarity", "min": 0.2}]}))
        assert rep["report"]["score_models"]["similarity"].startswith(name)
        assert f"model {model}" in rep["report"]["score_models"]["similarity"]


def test_laion2b_preset_uses_gcld3_as_datacomp_does(pool):
    pytest.importorskip("gcld3", reason="the gcld3 extra (cld3-py) is not installed")
    root, df = pool
    c = workbench.open_collection(root, model="l14")
    want = ref_laion2b(df)
    assert 0 < len(want) and kept_uids(c, preset("datacomp-laion2b")) == want
    rep = apply_and_export(c, preset("datacomp-laion2b"))["report"]
    assert rep["score_models"]["language_gcld3"] == "CLD3 (gcld3)"


def test_laion2b_preset_refuses_without_gcld3(pool, monkeypatch):
    import sys

    root, _ = pool
    monkeypatch.setitem(sys.modules, "gcld3", None)  # as if not installed: never replaced by fastText
    c = workbench.open_collection(root)
    with pytest.raises(WorkbenchError, match="gcld3"):
        apply(c, preset("datacomp-laion2b"), cache=False)


# -- the text-based baseline: WordNet 3.0 through NLTK 3.8.1 -----------------------------------------------------------
@pytest.fixture(scope="module")
def nltk_wordnet(tmp_path_factory):
    """NLTK 3.8.1's WordNet reader (DataComp's pinned version) over the WordNet 3.0 files found here."""
    from workbench.curation.wordnet import find_wordnet

    nltk = pytest.importorskip("nltk", reason="nltk (a dev dependency) is not installed")
    if nltk.__version__ != "3.8.1":
        pytest.skip(f"the reference look-up is NLTK 3.8.1's (DataComp's pin); this is {nltk.__version__}")
    try:
        src = find_wordnet()
    except WorkbenchError as exc:
        pytest.skip(str(exc))
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    if src.suffix == ".zip":
        import zipfile

        zipfile.ZipFile(src).extractall(tmp_path_factory.mktemp("wn"))
        src = tmp_path_factory.getbasetemp() / "wn0" / "wordnet"
    d = tmp_path_factory.mktemp("wndict")
    for f in src.iterdir():
        if f.is_file():
            os.symlink(f, d / f.name)
    if not (d / "lexnames").exists():  # Debian's wordnet-base leaves it out; only lexname() reads it
        (d / "lexnames").write_text("".join(f"{i:02d}\tlex.{i}\t0\n" for i in range(45)))
    return WordNetCorpusReader(str(d), None)


def test_text_based_preset_equals_datacomp_code(pool, nltk_wordnet):
    from workbench.curation.wordnet import imagenet21k_offsets, timm_info_file

    root, df = pool
    # DataComp's entity list: read as load_uids_with_text_entity reads it
    entity_ids = [int(x.strip()[1:]) for x in open(timm_info_file("imagenet21k_goog_synsets.txt")).readlines()]
    assert set(entity_ids) == imagenet21k_offsets() and len(entity_ids) == 21843
    want = ref_text_based(df, fasttext_lid(), nltk_wordnet, entity_ids)
    assert 0 < len(want)
    for model in ("l14", "b32"):
        assert kept_uids(workbench.open_collection(root, model=model), preset("datacomp-text-based")) == want


def test_wordnet_first_synset_equals_nltk_381(nltk_wordnet):
    from workbench.curation.wordnet import wordnet

    wn = wordnet()
    rng = random.Random(1)
    lemmas = sorted(wn.index)
    words = set(rng.sample(lemmas, 4000))
    for lemma in rng.sample(lemmas, 3000):
        words |= {lemma + s for s in ("s", "es", "ies", "ed", "ing", "er", "est", "men", "ses", "ves")}
        words |= {lemma.upper(), lemma.capitalize()}
    for pos in "nva":
        words |= set(rng.sample(sorted(wn.exceptions[pos]), 300))
    words |= {"Dogs", "dog.", "geese", "ran", "better", "seseseses", "İstanbul", "STRASSE", "hot_dog", "'hood"}
    for w in sorted(words):
        s = nltk_wordnet.synsets(w)
        assert wn.first_offset(w) == (s[0].offset() if s else None), w


def test_text_based_refuses_without_wordnet(pool, monkeypatch, tmp_path):
    from workbench.curation import wordnet as wnmod

    monkeypatch.setattr(wnmod, "_candidates", lambda: [tmp_path / "nothing"])
    wnmod.wordnet.cache_clear()
    try:
        with pytest.raises(WorkbenchError, match="WordNet 3.0"):
            apply(workbench.open_collection(pool[0]), preset("datacomp-text-based"), cache=False)
    finally:
        wnmod.wordnet.cache_clear()


# -- the image-based baseline ------------------------------------------------------------------------------------------
def test_fasttext_token_count_is_fasttext_tokenize():
    import polars as pl

    texts = STRESS + ["a\x00b", "a\x0bb\x0cc", "\n", "a\n", "\na", "a \n b", "a\n\nb", "ü ü\u00a0ü", "a\r\nb"]
    got = pl.DataFrame({"t": texts}).select(fasttext_token_count(pl.col("t"))).to_series().to_list()
    assert got == [len(ref_tokenize(t)) for t in texts]


def test_image_based_with_given_centroids_equals_datacomp_code(pool, tmp_path):
    import torch

    root, df = pool
    rng = np.random.default_rng(5)
    centroids = rng.standard_normal((16, 768)).astype(np.float32)  # unnormalised, as faiss leaves them
    target = rng.standard_normal((40, 768)).astype(np.float32)
    torch.save(centroids, tmp_path / "cent.pt", pickle_protocol=4)  # DataComp's centroid file format
    assert np.array_equal(read_torch_array(tmp_path / "cent.pt"), centroids)
    np.save(tmp_path / "ref.npy", target)
    image = Recipe.from_dict({"name": "i", "rules": [{"datacomp_image": "cent.pt", "reference": "ref.npy"}]})
    both = Recipe.from_dict({"name": "ic", "rules": [
        {"datacomp_image": "cent.pt", "reference": "ref.npy"},
        {"top_fraction": 0.3, "by": "clip_l14_similarity_score", "cut": "datacomp"}]})
    image.base = both.base = tmp_path
    c = workbench.open_collection(root, model="l14")
    want = ref_image_based(df, fasttext_lid(), centroids, target)
    assert 0 < len(want) < len(df["uid"])
    assert kept_uids(c, image) == want
    want_both = ref_image_based(df, fasttext_lid(), centroids, target, "clip_l14_similarity_score", 0.3)
    assert 0 < len(want_both) < len(want) and kept_uids(c, both) == want_both
    # DataComp's centroids are ViT-L/14's: a pool open with its B/32 embeddings is refused, not mixed
    with pytest.raises(WorkbenchError, match="model l14"):
        apply(workbench.open_collection(root, model="b32"), preset("datacomp-image-based"), cache=False)


def test_image_based_preset_refuses_without_datacomp_files(pool, monkeypatch, tmp_path):
    monkeypatch.setenv("WORKBENCH_HEADS_DIR", str(tmp_path / "heads"))
    monkeypatch.setenv("WORKBENCH_OFFLINE", "1")
    c = workbench.open_collection(pool[0], model="l14")
    with pytest.raises(WorkbenchError, match="small_centroids_l14.pt.*23c66a05") as e:
        apply(c, preset("datacomp-image-based"), cache=False)
    assert str(tmp_path / "heads" / "datacomp") in str(e.value)
    # a file that is not DataComp's (its sha256 differs) is refused too
    (tmp_path / "heads" / "datacomp").mkdir(parents=True)
    np.save(tmp_path / "heads" / "datacomp" / "x.npy", np.zeros((2, 768), np.float32))
    os.replace(tmp_path / "heads" / "datacomp" / "x.npy", tmp_path / "heads" / "datacomp" / "small_centroids_l14.pt")
    with pytest.raises(WorkbenchError, match="not DataComp's small_centroids_l14.pt"):
        apply(c, preset("datacomp-image-based"), cache=False)
