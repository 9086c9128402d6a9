"""The synthetic demo world's text encoder, and its registration with :mod:`workbench.models.prompts`.

:class:`DemoTextEncoder` is a bag of words mapped to concept vectors through the world's vocabulary
(unknown words get a small hash vector), plus the text offset ``m_txt``; the ``text_emb`` of every
row of a world *is* ``encode([caption])`` stored as float16. :class:`DemoText` puts it behind the
interface of an open_clip encoder (``dim``, ``identity``, ``encode_text``).

Importing this module registers the encoder (:func:`workbench.models.prompts.register_text_encoder`),
so :func:`workbench.models.prompts.text_encoder` finds it for a demo world; the models package names
this module in ``TEXT_ENCODER_PROVIDERS`` and imports it by name on first need, never the reverse.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import mmh3
import numpy as np

from workbench.errors import LayoutError
from workbench.io.kernels import unit_rows
from workbench.models.prompts import register_text_encoder

MODEL_NAME = "demo-synthetic"
WORLD_JSON = "world/world.json"
CONCEPTS_NPY = "world/concepts.npy"
OFFSETS_NPY = "world/offsets.npy"
TRUTH_DIR = "ground_truth"

_TOKEN = re.compile(r"[a-z0-9]+\+?")


def _unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm in their own dtype (zero rows stay zero). Row-wise only:
    independent of the batch."""
    return unit_rows(x, dtype=None)


# ------------------------------------------------------------------------------------------------
# The text encoder
# ------------------------------------------------------------------------------------------------
class DemoTextEncoder:
    """The synthetic world's text encoder: bag of words -> concept vectors (+ hash vectors) + m_txt.

    Deterministic and batch-independent: ``encode([t])[0]`` equals the row of ``t`` in any batch, and
    the ``text_emb`` of every row of the world is ``encode([caption])`` stored as float16.
    """

    def __init__(self, world: str | Path):
        world = Path(world)
        try:
            meta = json.loads((world / WORLD_JSON).read_text())
            concepts = np.load(world / CONCEPTS_NPY, allow_pickle=False)
            offsets = np.load(world / OFFSETS_NPY, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise LayoutError(f"not a synthetic demo world (cannot read world/ files: {exc})", world) from None
        self._setup(meta, concepts, offsets)

    @classmethod
    def _from_arrays(cls, meta: dict, concepts: np.ndarray, offsets: np.ndarray) -> "DemoTextEncoder":
        self = cls.__new__(cls)
        self._setup(meta, concepts, offsets)
        return self

    def _setup(self, meta: dict, concepts: np.ndarray, offsets: np.ndarray) -> None:
        g = meta["geometry"]
        self.concept_names: list[str] = list(meta["concepts"])
        self.concepts = np.ascontiguousarray(concepts, dtype=np.float32)
        self.m_img = np.ascontiguousarray(offsets[0], dtype=np.float32)
        self.m_txt = np.ascontiguousarray(offsets[1], dtype=np.float32)
        self.dim: int = int(self.concepts.shape[1])
        self._offset = np.float32(g["txt_offset"])
        self._content = np.float32(g["txt_content"])
        self._known = float(g["word_noise"])
        self._unknown = float(g["unknown_word"])
        self._nnz = int(g["hash_nnz"])
        self._hash_seed = int(meta["hash_seed"])
        ci = {c: i for i, c in enumerate(self.concept_names)}
        self._vocab = {w: tuple((ci[c], float(v)) for c, v in sorted(m.items(), key=lambda kv: ci[kv[0]]))
                       for w, m in meta["vocabulary"].items()}
        self._phrases = {tuple(w.split(" ")) for w in self._vocab if " " in w}
        self._stop = frozenset(meta["stopwords"])
        self._token_cache: dict[str, tuple] = {}
        self._text_cache: dict[str, tuple] = {}

    # -- analysis: text -> (concept ids, weights, hashed positions, values) -----------------------
    def tokens(self, text: str) -> list[str]:
        """Lower-cased word tokens, two-word vocabulary phrases joined ("teddy bear"), stopwords dropped."""
        raw = _TOKEN.findall(text.lower())
        out, i = [], 0
        while i < len(raw):
            if i + 1 < len(raw) and (raw[i], raw[i + 1]) in self._phrases:
                out.append(raw[i] + " " + raw[i + 1])
                i += 2
                continue
            if raw[i] not in self._stop:
                out.append(raw[i])
            i += 1
        return out

    def _hash(self, word: str) -> tuple[list[int], list[float]]:
        v = mmh3.hash128(word, self._hash_seed, signed=False)
        pos, sign = [], []
        for j in range(self._nnz):
            chunk = (v >> (16 * j)) & 0xFFFF
            pos.append((chunk & 0x7FFF) % self.dim)
            sign.append(1.0 if chunk & 0x8000 else -1.0)
        return pos, sign

    def _token(self, tok: str) -> tuple:
        hit = self._token_cache.get(tok)
        if hit is None:
            concepts = self._vocab.get(tok)
            if concepts is None and len(tok) > 3 and tok.endswith("s"):
                concepts = self._vocab.get(tok[:-1])  # plurals: "toys" -> "toy"
            pos, sign = self._hash(tok)
            scale = (self._known if concepts else self._unknown) / math.sqrt(self._nnz)
            hit = (concepts or (), pos, [s * scale for s in sign])
            if len(self._token_cache) >= 100_000:
                self._token_cache.clear()
            self._token_cache[tok] = hit
        return hit

    def _analyse(self, text: str) -> tuple:
        hit = self._text_cache.get(text)
        if hit is None:
            coef: dict[int, float] = {}
            hp: list[int] = []
            hv: list[float] = []
            for tok in self.tokens(text):
                concepts, pos, vals = self._token(tok)
                for c, w in concepts:
                    coef[c] = coef.get(c, 0.0) + w
                hp.extend(pos)
                hv.extend(vals)
            ids = sorted(coef)
            hit = (ids, [coef[c] for c in ids], hp, hv)
            if len(self._text_cache) >= 20_000:
                self._text_cache.clear()
            self._text_cache[text] = hit
        return hit

    # -- encoding ---------------------------------------------------------------------------------
    def encode(self, texts: list[str]) -> np.ndarray:
        """(n, dim) float32 unit rows. The same text gives the same row bits in any batch."""
        if isinstance(texts, str):
            raise TypeError("encode() takes a list of strings")
        texts = list(texts)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), 4096):
            out[start:start + 4096] = self._encode_batch(texts[start:start + 4096])
        return out

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        n, d = len(texts), self.dim
        parts = [self._analyse("" if t is None else str(t)) for t in texts]
        k = max((len(p[0]) for p in parts), default=0)
        ids = np.zeros((n, max(k, 1)), dtype=np.int64)
        ws = np.zeros((n, max(k, 1)), dtype=np.float32)
        flat_i, flat_v = [], []
        for r, (ci, cw, hp, hv) in enumerate(parts):
            ids[r, :len(ci)] = ci
            ws[r, :len(cw)] = cw
            if hp:
                base = r * d
                flat_i.extend(base + p for p in hp)
                flat_v.extend(hv)
        content = np.zeros((n, d), dtype=np.float32)
        for j in range(k):  # a fixed per-row summation order: results do not depend on the batch
            content += ws[:, j, None] * self.concepts[ids[:, j]]
        if flat_i:
            np.add.at(content.reshape(-1), np.asarray(flat_i, dtype=np.int64), np.asarray(flat_v, dtype=np.float32))
        t = self._offset * self.m_txt[None, :] + self._content * _unit(content)
        return _unit(t)



@dataclass
class DemoText:
    """The synthetic demo world's text encoder behind the same interface as an open_clip encoder."""

    world: Path

    def __post_init__(self):
        self._enc = DemoTextEncoder(self.world)
        self.dim = self._enc.dim
        self.identity = {"name": MODEL_NAME, "pretrained": None, "checkpoint_sha256": None, "dim": self.dim}

    def encode_text(self, texts, batch_size: int = 4096) -> np.ndarray:
        return self._enc.encode(list(texts))


def is_demo_world(collection) -> bool:
    """True when `collection` is a synthetic demo world (its model is ``demo-synthetic`` and it holds
    ``world/world.json``)."""
    ident = collection.model_identity or {}
    return ident.get("name") == MODEL_NAME and (collection.path / WORLD_JSON).exists()


register_text_encoder(MODEL_NAME, is_demo_world, lambda collection: DemoText(collection.path), synthetic=True)
