"""Model specs and identities: how a model is named on the command line and in manifests.

``parse_model_spec("ViT-B-32/laion2b_s34b_b79k")`` splits an open_clip name from its pretrained tag
(``NAME/TAG`` or ``NAME:TAG``; OpenAI spellings such as ``ViT-B/32`` stay whole; paths stay whole);
:func:`check_identity` compares an encoder's identity (``name``, ``pretrained``,
``checkpoint_sha256``, ``dim``) with a collection's and raises
:class:`~workbench.errors.ModelMismatchError` when their embeddings would not be comparable.

Pure Python: nothing here imports torch or open_clip.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from workbench.errors import CheckpointError, EncoderError, ModelMismatchError, WorkbenchError  # noqa: F401 - re-exported

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt", ".npz")



# ---------------------------------------------------------------- model specs and names

def normalise_model_name(name: str) -> str:
    """Compare-friendly model name: ``ViT-B/32``, ``vit-b-32`` and ``ViT-B-32-quickgelu`` agree."""
    n = str(name).strip().replace("/", "-").casefold()
    if n.endswith("-quickgelu"):
        n = n[: -len("-quickgelu")]
    return n


def _looks_like_path(s: str) -> bool:
    return (s.startswith(("/", "./", "../", "~")) or os.sep in s and Path(s).suffix != ""
            or s.lower().endswith(CHECKPOINT_SUFFIXES + (".json",)) or Path(s).expanduser().exists())


def parse_model_spec(spec: str) -> tuple[str, str | None]:
    """``"ViT-B-32/laion2b_s34b_b79k"`` or ``"ViT-B-32:laion2b_s34b_b79k"`` -> ``("ViT-B-32", tag)``.

    A path (to a config JSON or a checkpoint) stays whole; ``"config.json:ckpt.pt"`` splits into
    the two paths; ``"ViT-B/32"`` is a model name, not a name and a tag; ``hf-hub:`` and
    ``local-dir:`` specs are passed through whole.
    """
    spec = str(spec).strip()
    if not spec:
        raise WorkbenchError("empty model spec")
    if spec.startswith(("hf-hub:", "local-dir:")) or Path(spec).expanduser().exists():
        return spec, None
    if ":" in spec:
        name, tag = (s.strip() for s in spec.split(":", 1))
        if not name or not tag:
            raise WorkbenchError(f"bad model spec {spec!r}: expected NAME:TAG")
        return (name if _looks_like_path(name) else name.replace("/", "-")), tag
    if _looks_like_path(spec):
        return spec, None
    if "/" in spec:
        head, tail = spec.rsplit("/", 1)
        if re.fullmatch(r"\d+(@\d+px)?", tail):  # "ViT-B/32", "ViT-L/14@336px": OpenAI names
            return spec.replace("/", "-"), None
        if not head or not tail:
            raise WorkbenchError(f"bad model spec {spec!r}: expected NAME/TAG")
        return head.replace("/", "-"), tail
    return spec, None


def _is_checkpoint_path(pretrained) -> bool:
    if isinstance(pretrained, Path):
        return True
    return _looks_like_path(str(pretrained))



# ---------------------------------------------------------------- identity checks

def _describe(ident: dict) -> str:
    s = str(ident.get("name") or "an unnamed model")
    if ident.get("pretrained"):
        s += f"/{ident['pretrained']}"
    if ident.get("dim"):
        s += f" ({ident['dim']}-d)"
    return s


def _tag(ident: dict) -> str | None:
    p = ident.get("pretrained")
    if not isinstance(p, str) or not p.strip() or _looks_like_path(p):
        return None
    return p.strip().lower().replace("-", "_")


def check_identity(encoder_identity: dict, collection_identity: dict | None, dim: int | None = None,
                   where=None) -> None:
    """Raise ModelMismatchError when an encoder's embeddings cannot be compared with a collection's.

    ``dim`` is the collection's embedding width when known (from its shards). Checked: the widths;
    the model names when both are known (``ViT-B/32`` == ``ViT-B-32``); the checkpoint sha256s when
    both are known; the pretrained tags when both are tags (and no equal sha256 says otherwise).
    An unknown collection identity (None) only has its width checked.
    """
    enc = encoder_identity or {}
    coll = collection_identity if isinstance(collection_identity, dict) else {}
    enc_dim = enc.get("dim")
    for other in (dim, coll.get("dim")):
        if enc_dim is not None and other is not None and int(other) != int(enc_dim):
            raise ModelMismatchError(f"model mismatch: the encoder {_describe(enc)} makes {enc_dim}-d embeddings, "
                                     f"the collection's are {int(other)}-d", where)
    if not coll:
        return
    a, b = enc.get("name"), coll.get("name")
    if isinstance(a, str) and isinstance(b, str) and a.strip() and b.strip() \
            and b.strip().lower() not in ("unknown", "none") \
            and normalise_model_name(a) != normalise_model_name(b):
        raise ModelMismatchError(f"model mismatch: the encoder is {_describe(enc)}, "
                                 f"the collection's embeddings were made with {_describe(coll)}", where)
    sa, sb = enc.get("checkpoint_sha256"), coll.get("checkpoint_sha256")
    if sa and sb:
        if str(sa).lower() != str(sb).lower():
            raise ModelMismatchError(f"model mismatch: the encoder's checkpoint (sha256 {str(sa)[:12]}…) is not the "
                                     f"one the collection was embedded with (sha256 {str(sb)[:12]}…)", where)
        return
    ta, tb = _tag(enc), _tag(coll)
    if ta and tb and ta != tb:
        raise ModelMismatchError(f"model mismatch: the encoder has the {enc.get('pretrained')!r} weights, the "
                                 f"collection was embedded with {coll.get('pretrained')!r}", where)
