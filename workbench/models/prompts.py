"""Prompts as vectors: text encoders for a collection, stored prompt embeddings, and the prompt sets
of the releases (LAION-400M's NSFW/under-age/animal prompts, the safety-concept thresholds).

A text prompt needs the text tower of the model that made the collection's image embeddings:
:func:`text_encoder` finds it (the encoder a registered provider gives a collection that carries its
own, such as the synthetic demo world's; an open_clip model named on the command line, ``--model``;
or the model a manifest records). A prompt can also be a stored
embedding (``.npy`` of shape ``(d,)`` or ``(k, d)``): no text tower needed.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from workbench.errors import PromptError, WorkbenchError  # noqa: F401  (PromptError re-exported)
from workbench.io.files import sha256_file
from workbench.io.kernels import unit_rows
from workbench.models.heads import ModelMismatchError, safety_settings
from workbench.models.promptheads import DATA

unit = unit_rows  # float32 unit rows, zero rows stay zero (workbench.io.kernels.unit_rows)


# -- text encoders -----------------------------------------------------------------------------------
TEXT_ENCODER_PROVIDERS: tuple[str, ...] = ("workbench.demo.textencoder",)
"""Modules that register text encoders for collections carrying their own (the synthetic demo world's).
They are imported by name, on first need, by :func:`registered_text_encoders`: this package imports
none of them, and each registers itself with :func:`register_text_encoder` when it is imported."""


@dataclass(frozen=True)
class TextEncoderProvider:
    """A collection kind with its own text encoder: ``detect(collection) -> bool`` says whether a
    collection is of that kind, ``factory(collection)`` builds its encoder (``dim``, ``identity``,
    ``encode_text``); ``synthetic`` marks a generated teaching world (:func:`is_demo_world`)."""

    name: str
    detect: Callable
    factory: Callable
    synthetic: bool = False


_PROVIDERS: dict[str, TextEncoderProvider] = {}
_IMPORTED: set[str] = set()


def register_text_encoder(name: str, detect: Callable, factory: Callable, synthetic: bool = False) -> None:
    """Teach :func:`text_encoder` a kind of collection that carries its own text encoder (registering
    the same `name` again replaces the earlier entry)."""
    _PROVIDERS[name] = TextEncoderProvider(name, detect, factory, bool(synthetic))


def registered_text_encoders() -> list[TextEncoderProvider]:
    """The registered providers, after importing those named in :data:`TEXT_ENCODER_PROVIDERS` (a
    provider module that is not installed is skipped)."""
    import importlib

    for module in TEXT_ENCODER_PROVIDERS:
        if module not in _IMPORTED:
            _IMPORTED.add(module)
            try:
                importlib.import_module(module)
            except ModuleNotFoundError as exc:
                if exc.name is None or not module.startswith(exc.name):
                    raise
    return list(_PROVIDERS.values())


def own_text_encoder(collection) -> TextEncoderProvider | None:
    """The registered provider whose ``detect`` claims `collection`, or None."""
    return next((p for p in registered_text_encoders() if p.detect(collection)), None)


def is_demo_world(collection) -> bool:
    """True when `collection` is a synthetic demo world (a registered ``synthetic`` provider claims it)."""
    return any(p.synthetic and p.detect(collection) for p in registered_text_encoders())


def text_encoder(collection, model: str | None = None, pretrained: str | None = None, device: str = "auto"):
    """The text encoder to embed prompts for `collection` (see the module docstring), checked against
    what is known of the collection's model."""
    if model is None:
        own = own_text_encoder(collection)
        if own is not None:
            return own.factory(collection)
    from workbench.models.encoders import check_identity, load_encoder, parse_model_spec

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
file_sha256 = sha256_file  # the old name (workbench.io.files.sha256_file)


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
    """``$WORKBENCH_PROMPTS_DIR``, else the folder of prompt lists shipped with the package
    (``workbench/models/data``: ``laion400m_clip_filter_prompts.json``, see its README)."""
    env = os.environ.get("WORKBENCH_PROMPTS_DIR")
    return Path(env) if env else DATA


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
        caps = [str(c or "") for c, f in zip(captions, flagged) if f]  # case-sensitive, as the crawler's `x in TEXT`
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


def resolve_encoder(encoder, collection=None, device: str = "auto"):
    """The text encoder a computation uses, loaded only when it is needed.

    `encoder`: an encoder (anything with ``encode_text``), a zero-argument callable that returns one
    or None (so a command names its model up front and loads it only here), or None. Returns that
    encoder; when it is (or gives) None and `collection` is given, the collection's own text tower
    (:func:`text_encoder` on `device`); else None."""
    if encoder is not None and not hasattr(encoder, "encode_text") and callable(encoder):
        encoder = encoder()
    if encoder is None and collection is not None:
        encoder = text_encoder(collection, device=device)
    return encoder
