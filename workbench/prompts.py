"""Prompts as vectors: text encoders for a collection, stored prompt embeddings, and the prompt sets
of the releases (LAION-400M's NSFW/under-age/animal prompts, the safety-concept thresholds).

A text prompt needs the text tower of the model that made the collection's image embeddings:
:func:`text_encoder` finds it (the synthetic demo world's own encoder; an open_clip model named on
the command line, ``--model``; or the model a manifest records). A prompt can also be a stored
embedding (``.npy`` of shape ``(d,)`` or ``(k, d)``): no text tower needed.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import WorkbenchError
from .heads import ModelMismatchError, default_heads_dir, safety_settings


class PromptError(WorkbenchError):
    """A prompt that cannot be turned into a vector for this collection."""


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(n, 1e-12)


# -- text encoders -----------------------------------------------------------------------------------
@dataclass
class DemoText:
    """The synthetic demo world's text encoder behind the same interface as an open_clip encoder."""

    world: Path

    def __post_init__(self):
        from .demo import DemoTextEncoder

        self._enc = DemoTextEncoder(self.world)
        self.dim = self._enc.dim
        self.identity = {"name": "demo-synthetic", "pretrained": None, "checkpoint_sha256": None, "dim": self.dim}

    def encode_text(self, texts, batch_size: int = 4096) -> np.ndarray:
        return self._enc.encode(list(texts))


def is_demo_world(collection) -> bool:
    ident = collection.model_identity or {}
    return ident.get("name") == "demo-synthetic" and (collection.path / "world" / "world.json").exists()


def text_encoder(collection, model: str | None = None, pretrained: str | None = None, device: str = "auto"):
    """The text encoder to embed prompts for `collection` (see the module docstring), checked against
    what is known of the collection's model."""
    if model is None and is_demo_world(collection):
        return DemoText(collection.path)
    from .encoders import check_identity, load_encoder, parse_model_spec

    if model is None:
        ident = collection.model_identity or {}
        if ident.get("name") and ident.get("pretrained"):
            try:
                enc = load_encoder(ident["name"], ident["pretrained"], device=device)
            except WorkbenchError as exc:
                raise PromptError(f"the collection's model ({ident['name']}, {ident['pretrained']}, from its manifest) "
                                  f"could not be loaded ({exc}); pass --model (and --pretrained) or give the prompt "
                                  "as an embedding file", collection.path) from None
            check_identity(enc.identity, ident, dim=collection.dim, where=collection.path)
            return enc
        else:
            raise PromptError("text prompts need the text tower of the collection's model: pass --model "
                              "(an open_clip name/tag, a config JSON, or with --pretrained a local checkpoint), "
                              "or give the prompt as an embedding file (prompt_embedding: FILE.npy)", collection.path)
    if pretrained is None and not Path(str(model)).exists():
        model, pretrained = parse_model_spec(str(model))
    enc = load_encoder(model, pretrained, device=device)
    check_identity(enc.identity, collection.model_identity, dim=collection.dim, where=collection.path)
    return enc


# -- stored prompt embeddings ------------------------------------------------------------------------
def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_prompt_embeddings(files, base: Path | None, dim: int | None) -> tuple[np.ndarray, list[str]]:
    """The stacked unit rows of several prompt-embedding files (relative ones resolve against `base`,
    the recipe's folder) and each file's sha256."""
    paths = [Path(f) if Path(f).is_absolute() or base is None else Path(base) / f for f in files]
    return np.concatenate([load_prompt_embedding(p, dim) for p in paths]), [file_sha256(p) for p in paths]


def load_prompt_embedding(path: str | Path, dim: int | None) -> np.ndarray:
    """A ``(k, d)`` float32 array of unit rows from a ``.npy`` file of shape ``(d,)`` or ``(k, d)``."""
    path = Path(path)
    if not path.is_file():
        raise PromptError("no such prompt embedding file", path)
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise PromptError(f"not a readable .npy prompt embedding ({exc})", path) from None
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[0] == 0 or not np.issubdtype(arr.dtype, np.floating):
        raise PromptError(f"a prompt embedding is a float array of shape (d,) or (k, d); this one is {arr.dtype} {arr.shape}", path)
    if dim is not None and arr.shape[1] != dim:
        raise ModelMismatchError(f"prompt embedding is {arr.shape[1]}-d but the collection's embeddings are {dim}-d "
                                 "(another model?)", path)
    arr = arr.astype(np.float32)
    norms = np.linalg.norm(arr, axis=1)
    if not np.all(np.isfinite(norms)) or np.any(norms < 1e-12):
        bad = int(np.nonzero(~np.isfinite(norms) | (norms < 1e-12))[0][0])
        raise PromptError("prompt embedding has a zero, NaN or infinite vector", path, row=bad)
    return unit(arr)


# -- LAION-400M's zero-shot NSFW tag -----------------------------------------------------------------
def prompts_dir() -> Path:
    env = os.environ.get("WORKBENCH_PROMPTS_DIR")
    return Path(env) if env else default_heads_dir().parent / "prompts"


@dataclass
class Laion400mPrompts:
    nsfw: list[str]  # 35 prompts; the source's missing comma kept ("insectfashion")
    underage: list[str]
    animal: list[str]
    safe_below: int = 19  # UNLIKELY when both top-2 indices are < 19 (index 18 is a porn prompt: kept)
    underage_below: int = 4  # drop when a top-2 under-age index is < 4
    animal_above: int = 20  # drop when the top-1 animal index is > 20
    caption_words: tuple = ("teen", "kid", "child", "baby")
    source: str = ""


def laion400m_prompts(path: str | Path | None = None) -> Laion400mPrompts:
    path = Path(path) if path else prompts_dir() / "laion400m_clip_filter_prompts.json"
    try:
        d = json.loads(path.read_text())
        out = Laion400mPrompts(list(d["nsfw_categories"]), list(d["underaged_categories"]),
                               list(d["animal_categories"]), source=str(path))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PromptError(f"cannot read LAION-400M prompt lists ({exc})", path) from None
    if len(out.nsfw) != 35:
        raise PromptError(f"expected the release's 35 NSFW prompts, found {len(out.nsfw)}", path)
    return out


def laion400m_rule(img_unit: np.ndarray, p_nsfw: np.ndarray, p_under: np.ndarray, p_animal: np.ndarray,
                   captions, spec: Laion400mPrompts) -> tuple[np.ndarray, np.ndarray]:
    """Tags (``UNLIKELY``/``UNSURE``/``NSFW``) and the under-age/animal drop flag, as the release did.

    ``softmax(100 * img @ prompts.T)`` ranks prompts exactly as the raw cosines do, so top-k is taken
    on the cosines. Ties go to the lower index (a stable sort), as ``torch.topk`` does on CPU.
    """
    def topk(p, k):
        return np.argsort(-(img_unit @ p.T), axis=1, kind="stable")[:, :k]

    top2 = topk(p_nsfw, 2)
    low = (top2 < spec.safe_below).sum(axis=1)
    tags = np.where(low == 2, "UNLIKELY", np.where(low == 0, "NSFW", "UNSURE")).astype(object)
    flagged = tags != "UNLIKELY"
    drop = np.zeros(len(tags), dtype=bool)
    if flagged.any():
        sub = img_unit[flagged]
        under = (np.argsort(-(sub @ p_under.T), axis=1, kind="stable")[:, :2] < spec.underage_below).any(axis=1)
        caps = [str(c or "").lower() for c, f in zip(captions, flagged) if f]
        words = np.array([any(w in c for w in spec.caption_words) for c in caps], dtype=bool)
        animal = np.argmax(sub @ p_animal.T, axis=1) > spec.animal_above
        drop[flagged] = under | words | animal
    return tags, drop


# -- safety concepts ---------------------------------------------------------------------------------
def safety_concepts(data_dir=None) -> tuple[list[str], np.ndarray, list[str], np.ndarray]:
    """(nsfw concept names, thresholds, special concept names, thresholds) of safety_settings.yml."""
    s = safety_settings(data_dir)
    nsfw = s.get("nsfw", {}).get("concepts", {})
    special = s.get("special", {}).get("concepts", {})
    return (list(nsfw), np.array(list(nsfw.values()), np.float32),
            list(special), np.array(list(special.values()), np.float32))


def safety_margin(img_unit: np.ndarray, c_nsfw: np.ndarray, t_nsfw: np.ndarray, c_special: np.ndarray,
                  t_special: np.ndarray, special_adjustment: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """Stable Diffusion safety-checker arithmetic over the concept table: a row is flagged when some
    concept's cosine exceeds its threshold; finding a "special" concept (children) lowers every
    threshold by ``special_adjustment``. Returns the largest ``cos - threshold (+ adjustment)`` over
    the nsfw concepts (``> 0`` = flagged) and the index of that concept."""
    adj = np.zeros(len(img_unit), np.float32)
    if len(t_special):
        adj = np.where(((img_unit @ c_special.T) - t_special).max(axis=1) > 0, special_adjustment, 0.0).astype(np.float32)
    m = (img_unit @ c_nsfw.T) - t_nsfw + adj[:, None]
    return m.max(axis=1), m.argmax(axis=1)
