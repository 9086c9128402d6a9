"""The SYNTHETIC demo world: a teaching collection in the LAION / clip-retrieval layout, with ground truth.

Nothing here is a real image, a real caption crawl or a real CLIP model. The world is generated,
deterministically from a seed, in a small known *concept space*:

- every concept (``cat``, ``beach``, ``painting``, ``watermark``, ``child``, the unsafe stand-ins
  ``unsafe_explicit`` / ``unsafe_gore`` ...) is a random unit vector, the base directions
  orthonormal; objects and styles lean towards a latent parent (cat and dog share ``animal``,
  painting and cartoon share ``artwork``), so broad words ("animal", "illustration") work too;
- an image embedding is ``normalise(a*m_img + b*normalise(sum_k w_k c_k) + sigma*noise)``: the
  concepts it shows, plus a shared offset ``m_img`` (CLIP's "modality gap") and noise;
- a caption embedding is :class:`DemoTextEncoder` applied to the caption: a bag of words mapped
  to concepts through a vocabulary/synonym table (unknown words get a small hash vector), plus the
  text offset ``m_txt``. The ``text_emb`` of every row *is* ``encode(caption)`` (stored as
  float16), so prompt search over the collection and the encoder agree;
- metadata columns follow LAION-5B (+ LAION-400M's ``NSFW`` tag), and ``ground_truth/`` says, for
  every row, what its image really shows, what kind of caption it got and which rows duplicate it,
  so the precision and recall of every filter can be measured.

The unsafe concepts are stand-ins (random directions with a name): there is no explicit content
anywhere; some of their captions carry the tame keywords text audits look for ('adult', 'xxx',
'hot ', 'sexy', 'nsfw').

Files (beside the usual ``img_emb/``, ``text_emb/``, ``metadata/``, ``manifest.json``)::

    world/world.json               generator, seed, parameters, concept names, vocabulary (the word "synthetic")
    world/concepts.npy             (n_concepts, dim) float32 concept vectors
    world/offsets.npy              (2, dim) float32: m_img, m_txt
    ground_truth/truth_<i>.parquet one per shard, rows in collection order

Tuned so that, as in LAION (REFERENCE.md): cosine(image, own caption) is about 0.32 +- 0.035 for a
matching caption and about 0.12 for a caption of an unrelated row (0.28 over all rows, junk and
partial captions included); punsafe > 0.5 about 3%; pwatermark > 0.8 about 5%.
Rows are generated in blocks of 10,000 (the world does not depend on the shard size) and streamed
to the :class:`~workbench.io.writer.ShardWriter`: memory stays bounded for any number of rows.

This module writes the world and reads its ground truth; the pieces live beside it:
:mod:`~workbench.demo.vocabulary` (concepts, geometry, word tables), :mod:`~workbench.demo.textencoder`
(:class:`DemoTextEncoder`, registered with :func:`workbench.models.prompts.register_text_encoder`),
:mod:`~workbench.demo.captions`, :mod:`~workbench.demo.generate` (the rows, block by block) and
:mod:`~workbench.demo.summary` (:func:`summarize_world`); their public names are re-exported here.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from workbench.demo.captions import _NOUNS  # noqa: F401  (re-exported)
from workbench.demo.generate import (BLOCK_ROWS, GENERATOR, GENERATOR_VERSION,  # noqa: F401  (re-exported)
                                     _Builder, _parameters, _world_meta)
from workbench.demo.summary import _numbered, summarize_world  # noqa: F401  (re-exported)
from workbench.demo.textencoder import (CONCEPTS_NPY, MODEL_NAME, OFFSETS_NPY,  # noqa: F401  (re-exported)
                                        TRUTH_DIR, WORLD_JSON, DemoText, DemoTextEncoder)
from workbench.demo.vocabulary import (CONCEPTS, GEOMETRY, LAION400M_NSFW_PROMPTS,  # noqa: F401  (re-exported)
                                       NSFW_SAFE_BELOW, OBJECTS, SCENES, STOPWORDS, STYLES, VOCABULARY)
from workbench.errors import LayoutError, WriteError
from workbench.io.progress import progress_bar

_OWN_ENTRIES = {"img_emb", "text_emb", "metadata", "ground_truth", "world", ".staging"}


# ------------------------------------------------------------------------------------------------
# Public API
# ------------------------------------------------------------------------------------------------
def default_rows_per_shard(rows: int) -> int:
    return min(1_000_000, max(10_000, rows // 10))


def _existing(out: Path, params: dict) -> bool:
    """True if `out` holds this very world; raise if it holds something else; False if empty/absent."""
    if not out.exists():
        return False
    if not out.is_dir():
        raise WriteError("exists and is not a folder; choose another --out for the synthetic demo world", out)
    entries = {p.name for p in out.iterdir()}
    if not entries or entries == {".staging"}:
        return False
    wj, man = out / WORLD_JSON, out / "manifest.json"
    try:
        world = json.loads(wj.read_text()) if wj.is_file() else None
        manifest = json.loads(man.read_text()) if man.is_file() else None
    except (OSError, ValueError):
        world = manifest = None
    if world is not None and world.get("generator") == GENERATOR:
        if manifest is not None:
            ok = (world.get("parameters") == params and manifest.get("parameters") == params
                  and manifest.get("rows") == params["rows"]
                  and all((out / f["path"]).is_file() for f in manifest.get("files", []) + manifest.get("extra_files", [])))
            if ok:
                return True
            raise WriteError(
                f"holds a different synthetic demo world ({_describe(world.get('parameters'))}; asked for "
                f"{_describe(params)}); choose another folder or delete this one", out)
        if entries <= _OWN_ENTRIES:  # an interrupted build of a demo world (no manifest): start again
            for name in entries:
                shutil.rmtree(out / name)
            return False
    raise WriteError("is not empty and holds no synthetic demo world; choose an empty or new folder", out)


def _describe(p: dict | None) -> str:
    if not isinstance(p, dict):
        return "unknown parameters"
    return ", ".join(f"{k}={p.get(k)}" for k in ("rows", "seed", "rows_per_shard", "dim", "generator_version"))


def build_demo_world(out: str | Path, rows: int = 100_000, seed: int = 0, rows_per_shard: int | None = None,
                     dim: int = 512, progress: bool = False) -> Path:
    """Write the synthetic demo world into `out` (LAION layout + ground truth) and return ``Path(out)``.

    Same (rows, seed, rows_per_shard, dim) -> byte-identical data files. If `out` already holds that
    world, nothing is rebuilt; if it holds anything else, :class:`~workbench.errors.WriteError`.
    """
    out = Path(out)
    rows, seed, dim = int(rows), int(seed), int(dim)
    if rows < 1:
        raise WriteError(f"rows must be >= 1, got {rows}", out)
    if seed < 0:
        raise WriteError(f"seed must be >= 0, got {seed}", out)
    if dim < 128:
        raise WriteError(f"dim must be >= 128 for a usable concept space, got {dim}", out)
    rps = default_rows_per_shard(rows) if rows_per_shard is None else int(rows_per_shard)
    if rps < 1:
        raise WriteError(f"rows_per_shard must be >= 1, got {rps}", out)
    params = _parameters(rows, seed, rps, dim)
    if _existing(out, params):
        return out
    builder = _Builder(rows, seed, dim)
    meta = _world_meta(rows, seed, rps, dim)
    bar = progress_bar(progress, rows, "synthetic demo world", unit="rows", unit_scale=True)
    model = {"name": MODEL_NAME, "synthetic": True, "dim": dim,
             "note": "synthetic concept-space embeddings (workbench.demo.build), not a real CLIP model; "
                     "text prompts: workbench.demo.build.DemoTextEncoder"}
    try:
        _write_world(out, builder, meta, rps, params, model, bar)
    finally:
        bar.close()
    return out


def _write_world(out: Path, builder: "_Builder", meta: dict, rps: int, params: dict, model: dict, bar) -> None:
    from workbench.io.writer import ShardWriter

    with ShardWriter(out, rows_per_shard=rps, padding=0, parameters=params, model=model) as w:
        # world/ first: a folder holding it but no manifest.json is recognisably an interrupted build
        w.write_extra(WORLD_JSON, lambda p: p.write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n"))
        w.write_extra(CONCEPTS_NPY, lambda p: _save_npy(p, builder.concepts))
        w.write_extra(OFFSETS_NPY, lambda p: _save_npy(p, builder.offsets))
        pending: list[pa.Table] = []
        pending_rows, shard = 0, 0
        for b in range(builder.n_blocks):
            img16, txt16, table, truth = builder.block(b)
            w.add(image=img16, text=txt16, metadata=table)
            pending.append(truth)
            pending_rows += truth.num_rows
            while pending_rows >= rps or (b == builder.n_blocks - 1 and pending_rows > 0):
                full = pa.concat_tables(pending)
                take = min(rps, pending_rows)
                _write_truth(w, shard, full.slice(0, take))
                rest = full.slice(take)
                pending, pending_rows, shard = ([rest] if rest.num_rows else []), rest.num_rows, shard + 1
            bar.update(len(img16))


def _save_npy(path: Path, arr: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, arr, allow_pickle=False)


def _write_truth(w, shard: int, table: pa.Table) -> None:
    w.write_extra(f"{TRUTH_DIR}/truth_{shard}.parquet", lambda p: pq.write_table(table, p))


def load_ground_truth(world: str | Path) -> pl.DataFrame:
    """The synthetic world's ground truth: one row per collection row, ``row`` = global row id, in order."""
    world = Path(world)
    files = _numbered(world / TRUTH_DIR, "truth_", ".parquet")
    if not files:
        raise LayoutError("no ground_truth/truth_<i>.parquet here: not a synthetic demo world", world)
    df = pl.concat([pl.read_parquet(f) for f in files], how="vertical")
    rows = df["row"].to_numpy()
    if not np.array_equal(rows, np.arange(len(df))):
        raise LayoutError("ground truth rows are not 0..N-1 in order", world / TRUTH_DIR)
    return df
