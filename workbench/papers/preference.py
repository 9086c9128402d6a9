"""CLIP-DPO preference pairs: rank several candidate captions (or answers) per image by CLIP.

    from workbench.papers.preference import PairRules, make_pairs
    result = make_pairs(collection, candidates, PairRules(min_margin=2.0), encoder=enc)
    result.pairs        # polars DataFrame: image, row, prompt, chosen, rejected, chosen_score, ...
    result.counts       # what each rule removed

``candidates`` has one row per candidate: ``image`` (the collection's ``key``, or a global row id),
``prompt`` (the question; may be empty) and ``candidate`` (the text). Candidate embeddings come from
an ``embedding`` column when present (unit vectors of the collection's dim), else the text tower
encodes them. Each candidate's score is CLIPScore-style: 100 x cosine(image, candidate).

Rules, in order (each counted):
1. ``text_prompt`` / ``text_max``: images whose score for the text prompt (e.g. "an image with
   text") is above ``text_max`` are dropped with all their candidates (CLIP ranks captions that
   read the image's text too highly);
2. ``min_score``: candidates scoring below it are dropped;
3. ``max_length``: candidates longer than it (characters) are dropped;
4. pairs (chosen = the higher score) of the remaining candidates of one (image, prompt) are kept
   when their scores differ by at least ``min_margin`` (ties never make a pair) and the longer
   text is at most ``max_length_ratio`` times the shorter.

The output rows are what DPO trainers read: ``prompt``, ``chosen``, ``rejected`` (+ ``image``,
the scores and the margin); :func:`write_pairs` writes them as parquet and as JSON lines.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from workbench.errors import WorkbenchError
from workbench.io.files import write_atomic
from workbench.io.kernels import unit_rows

SCALE = 100.0


@dataclass
class PairRules:
    min_score: float | None = None
    max_length: int | None = None
    text_prompt: str | None = None
    text_max: float | None = None
    min_margin: float = 2.0
    max_length_ratio: float | None = 2.0

    def check(self) -> None:
        if (self.text_prompt is None) != (self.text_max is None):
            raise WorkbenchError("the text rule needs both a text prompt and its maximum score")
        if self.min_margin <= 0:
            raise WorkbenchError("the margin must be > 0 (ties never make a pair)")
        if self.max_length_ratio is not None and self.max_length_ratio < 1:
            raise WorkbenchError("the length ratio is longer / shorter: it must be >= 1")


@dataclass
class PairsResult:
    pairs: pl.DataFrame
    counts: dict = field(default_factory=dict)
    scores: pl.DataFrame | None = None  # every candidate with its score and why it was dropped (if it was)


def _image_rows(collection, images: list) -> np.ndarray:
    """Global row ids of the candidates' images (keys, or integer row ids)."""
    if all(isinstance(i, (int, np.integer)) for i in images):
        rows = np.asarray(images, np.int64)
        bad = np.nonzero((rows < 0) | (rows >= len(collection)))[0]
        if len(bad):
            raise WorkbenchError(f"image {rows[bad[0]]} is not a row of the collection ({len(collection):,} rows)",
                                 row=int(bad[0]))
        return rows
    canon = collection.canonical
    if "key" not in canon:
        raise WorkbenchError("candidates name images by key, and the collection has no key column "
                             "(give global row ids instead)", collection.path)
    keys = collection.metadata.select("row", "key").collect()
    lookup = dict(zip(keys["key"].cast(pl.Utf8).to_list(), keys["row"].to_list()))
    out = np.empty(len(images), np.int64)
    for i, k in enumerate(images):
        r = lookup.get(str(k))
        if r is None:
            raise WorkbenchError(f"image {k!r} is not a key of the collection", row=i)
        out[i] = r
    return out


_unit = unit_rows  # float32 unit rows, zero rows stay zero (workbench.io.kernels.unit_rows)


def make_pairs(collection, candidates: pl.DataFrame, rules: PairRules, encoder=None) -> PairsResult:
    """Score every candidate against its image and build the pairs the rules allow."""
    rules.check()
    need = {"image", "candidate"}
    missing = need - set(candidates.columns)
    if missing:
        raise WorkbenchError(f"candidates need columns image, candidate (and prompt); missing {sorted(missing)}")
    df = candidates
    if "prompt" not in df.columns:
        df = df.with_columns(pl.lit("").alias("prompt"))
    df = df.with_columns(pl.col("candidate").cast(pl.Utf8), pl.col("prompt").cast(pl.Utf8).fill_null(""))
    nulls = df["candidate"].is_null().arg_true()
    if len(nulls):
        raise WorkbenchError("a candidate text is empty (null)", row=int(nulls[0]))
    rows = _image_rows(collection, df["image"].to_list())
    img = collection.take_embeddings(rows, "image", normalize=True)
    if "embedding" in df.columns:
        cand = _unit(np.asarray(df["embedding"].to_list(), np.float32))
        if cand.shape[1] != img.shape[1]:
            raise WorkbenchError(f"candidate embeddings are {cand.shape[1]}-d, the images {img.shape[1]}-d")
    else:
        if encoder is None:
            raise WorkbenchError("candidates without an embedding column need a text encoder (--model)")
        cand = _unit(encoder.encode_text(df["candidate"].to_list()))
        if cand.shape[1] != img.shape[1]:
            raise WorkbenchError(f"the text encoder gives {cand.shape[1]}-d embeddings, the images are {img.shape[1]}-d")
    score = SCALE * np.einsum("ij,ij->i", img, cand)
    df = df.with_columns(pl.Series("row", rows), pl.Series("score", score.astype(np.float64)),
                         pl.col("candidate").str.len_chars().alias("length"))
    dropped = pl.Series("dropped", [None] * df.height, pl.Utf8)
    counts = {"candidates": df.height, "images": int(df["row"].n_unique())}

    reason = np.full(df.height, None, object)
    if rules.text_prompt is not None:
        if encoder is None:
            raise WorkbenchError("the text rule needs a text encoder (--model) for its prompt")
        q = _unit(encoder.encode_text([rules.text_prompt]))[0]
        uniq = np.unique(rows)
        text_score = SCALE * (collection.take_embeddings(uniq, "image", normalize=True) @ q)
        texty = set(uniq[text_score > rules.text_max].tolist())
        hit = np.array([r in texty for r in rows])
        reason[hit] = "image contains text"
        counts["images_with_text"] = len(texty)
    alive = reason == None  # noqa: E711 - element-wise on an object array
    if rules.min_score is not None:
        hit = alive & (score < rules.min_score)
        reason[hit] = "below min score"
        alive &= ~hit
    if rules.max_length is not None:
        hit = alive & (df["length"].to_numpy() > rules.max_length)
        reason[hit] = "too long"
        alive &= ~hit
    for r in ("image contains text", "below min score", "too long"):
        counts[f"candidates_dropped: {r}"] = int(np.sum(reason == r))
    dropped = pl.Series("dropped", reason.tolist(), pl.Utf8)
    scored = df.with_columns(dropped)

    left = scored.filter(pl.col("dropped").is_null()).with_row_index("_i")
    a = left.select("_i", "image", "row", "prompt", "candidate", "score", "length")
    pairs = a.join(a, on=["row", "prompt"], suffix="_r").filter(pl.col("_i") != pl.col("_i_r"))
    pairs = pairs.filter(pl.col("score") >= pl.col("score_r"))  # each unordered pair once (ties: both ways, dropped below)
    total = pairs.filter((pl.col("score") > pl.col("score_r")) | (pl.col("_i") < pl.col("_i_r")))
    counts["pairs_considered"] = total.height
    tie = total.filter(pl.col("score") == pl.col("score_r"))
    counts["pairs_dropped: tie"] = tie.height
    p = total.filter(pl.col("score") > pl.col("score_r")).with_columns((pl.col("score") - pl.col("score_r")).alias("margin"))
    small = p.filter(pl.col("margin") < rules.min_margin)
    counts["pairs_dropped: margin below min"] = small.height
    p = p.filter(pl.col("margin") >= rules.min_margin)
    if rules.max_length_ratio is not None:
        ratio = pl.max_horizontal("length", "length_r") / pl.min_horizontal("length", "length_r").clip(lower_bound=1)
        far = p.filter(ratio > rules.max_length_ratio)
        counts["pairs_dropped: length ratio"] = far.height
        p = p.filter(ratio <= rules.max_length_ratio)
    out = p.select(
        pl.col("image"), pl.col("row"), pl.col("prompt"),
        pl.col("candidate").alias("chosen"), pl.col("candidate_r").alias("rejected"),
        pl.col("score").alias("chosen_score"), pl.col("score_r").alias("rejected_score"), pl.col("margin"),
    ).sort(["row", "prompt", "chosen_score", "rejected_score", "chosen", "rejected"],
           descending=[False, False, True, False, False, False])
    counts["pairs"] = out.height
    counts["rules"] = asdict(rules)
    return PairsResult(out, counts, scored.drop("length"))


def write_pairs(result: PairsResult, folder: str | Path) -> dict:
    """``pairs.parquet``, ``pairs.jsonl`` (one {"prompt", "chosen", "rejected", "image", scores} per
    line, as DPO trainers read them), ``candidates.parquet`` (every candidate's score and drop reason)
    and ``counts.json``; each written to a temporary name and renamed."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    def atomic(name: str, write) -> str:
        return str(write_atomic(folder / name, write))

    files = {
        "pairs": atomic("pairs.parquet", lambda p: result.pairs.write_parquet(p)),
        "jsonl": atomic("pairs.jsonl", lambda p: p.write_text("".join(
            json.dumps({"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"], "image": r["image"],
                        "chosen_score": round(r["chosen_score"], 4), "rejected_score": round(r["rejected_score"], 4)},
                       ensure_ascii=False) + "\n"
            for r in result.pairs.iter_rows(named=True)), encoding="utf-8")),
    }
    if result.scores is not None:
        files["candidates"] = atomic("candidates.parquet", lambda p: result.scores.drop("embedding", strict=False).write_parquet(p))
    files["counts"] = atomic("counts.json", lambda p: p.write_text(json.dumps(result.counts, indent=1) + "\n"))
    return files


def pairs_from_file(collection, candidates, rules: PairRules, out, encoder=None,
                    device: str = "auto") -> tuple[PairsResult, dict, dict]:
    """What ``workbench pairs`` does: read the `candidates` parquet (a path; an unreadable file
    names it), check `rules` before any model is loaded, score with the text `encoder` (an encoder,
    a zero-argument callable giving one, or None: the collection's own on `device`) only when needed (candidates
    without an ``embedding`` column, or a text prompt), build the pairs (:func:`make_pairs`) and
    write them into the folder `out` (:func:`write_pairs`).

    Returns (the result, its counts with ``rules`` last and the written ``files``, the files)."""
    from workbench.io.files import read_parquet_named
    from workbench.models.prompts import resolve_encoder

    cands = read_parquet_named(candidates, "candidates")
    rules.check()  # before a model is loaded
    enc = None
    if "embedding" not in cands.columns or rules.text_prompt:
        enc = resolve_encoder(encoder, collection, device)
    res = make_pairs(collection, cands, rules, encoder=enc)
    files = write_pairs(res, out)
    report = {**{k: v for k, v in res.counts.items() if k != "rules"}, "rules": res.counts["rules"], "files": files}
    return res, report, files
