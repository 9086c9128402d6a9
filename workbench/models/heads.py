"""Published detector heads as numpy functions of L2-normalised CLIP image embeddings.

Every head maps a float32 ``(n, d)`` array to a float32 ``(n,)`` score. No TensorFlow is used
and nothing untrusted is unpickled: the Keras NSFW detectors are read with the hand-written
tensor-bundle/protobuf reader in :mod:`workbench.models.tfbundle`; the torch ``.pth`` heads with
``torch.load(..., weights_only=True)`` (torch is imported lazily, only by those loaders); the
``.npy`` prompt files with ``np.load(allow_pickle=False)``; the yml with ``yaml.safe_load``.

The heads live beside this registry: :mod:`workbench.models.nsfw` (with
:mod:`workbench.models.tfbundle`), :mod:`workbench.models.mlpheads`,
:mod:`workbench.models.promptheads`, and the :class:`Head` object in
:mod:`workbench.models.headbase`; their public names are re-exported here.

Registry::

    from workbench.models.heads import head, HEADS
    punsafe = head("nsfw-l14")(emb)          # (n,) in [0, 1]
    HEADS["nsfw-l14"].dim                    # 768

Heads: ``nsfw-l14``, ``nsfw-b32`` (p(unsafe)), ``aesthetic-v2-l14``, ``aesthetic-v1-b32``,
``aesthetic-v1-l14`` (score, about 1-10), ``q16-b32``, ``q16-l14`` (p(inappropriate)),
``violence-b32``, ``violence-l14`` (margin; ``> 0`` means flagged). A head's file is read from the
heads folder (``$WORKBENCH_HEADS_DIR``, default ``~/.cache/laion-workbench/heads``), where it is
fetched on first use, checked against its pinned sha256 (:mod:`workbench.models.headfiles`;
``workbench heads fetch`` fetches them ahead of time); or from a folder passed as ``data_dir``.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

from workbench.errors import ConfigError, HeadFileError, ModelMismatchError, WorkbenchError  # noqa: F401  (re-exported)
from workbench.models.headbase import Head, default_heads_dir  # noqa: F401  (re-exported)
from workbench.models.mlpheads import (_linear_chain, _mlp_fn, _torch_state_dict,  # noqa: F401  (re-exported)
                                       aesthetic_v1, aesthetic_v2, load_safetensors_mlp, safetensors_head, torch_mlp)
from workbench.models.nsfw import nsfw_detector, nsfw_detector_zip  # noqa: F401  (re-exported)
from workbench.models.promptheads import (_load_prompts, prompt_pair_head, q16,  # noqa: F401  (re-exported)
                                          safety_settings, violence)


def is_violent(x, model: str = "l14", data_dir: str | Path | None = None) -> np.ndarray:
    """Boolean per row: ``argmax(img @ P.T) == 1``."""
    return head(f"violence-{model}", data_dir).flagged(x)  # type: ignore[attr-defined]


# ---------------------------------------------------------------- registry

@dataclass(frozen=True)
class HeadSpec:
    dim: int
    kind: str
    build: Callable[[Path], Head]
    description: str


HEADS: dict[str, HeadSpec] = {
    "nsfw-l14": HeadSpec(768, "probability", lambda d: nsfw_detector("l14", d), "LAION punsafe, ViT-L/14"),
    "nsfw-b32": HeadSpec(512, "probability", lambda d: nsfw_detector("b32", d), "LAION NSFW, ViT-B/32"),
    "aesthetic-v2-l14": HeadSpec(768, "score", aesthetic_v2, "improved aesthetic predictor (v2)"),
    "aesthetic-v1-b32": HeadSpec(512, "score", lambda d: aesthetic_v1("b32", d), "LAION aesthetic v1"),
    "aesthetic-v1-l14": HeadSpec(768, "score", lambda d: aesthetic_v1("l14", d), "LAION aesthetic v1"),
    "q16-b32": HeadSpec(512, "probability", lambda d: q16("b32", d), "Q16 p(inappropriate)"),
    "q16-l14": HeadSpec(768, "probability", lambda d: q16("l14", d), "Q16 p(inappropriate)"),
    "violence-b32": HeadSpec(512, "margin", lambda d: violence("b32", d), "violence prompts"),
    "violence-l14": HeadSpec(768, "margin", lambda d: violence("l14", d), "violence prompts"),
}


@lru_cache(maxsize=32)
def _build(name: str, data_dir: str) -> Head:
    spec = HEADS[name]
    h = spec.build(Path(data_dir))
    if h.dim != spec.dim:
        raise ModelMismatchError(f"head {name!r} file gives {h.dim}-d input, registry says {spec.dim}",
                                 h.source)
    return h


def head(name: str, data_dir: str | Path | None = None) -> Head:
    """Build (and cache) a registered head by name: its file is read from `data_dir` when given, else
    from the heads folder, fetched there first when it is missing."""
    if name not in HEADS:
        raise ConfigError(f"unknown head {name!r}; known: {', '.join(sorted(HEADS))}")
    if data_dir is None:
        from workbench.models.headfiles import ensure_head

        ensure_head(name)
    return _build(name, str(Path(data_dir) if data_dir else default_heads_dir()))


# ---------------------------------------------------------------- any head from a file

def load_head(path: str | Path, data_dir: str | Path | None = None) -> Head:
    """A head from a registered name or a file; call it on an ``(n, d)`` array to get ``n`` scores.

    - a name from :data:`HEADS` (``nsfw-l14``, ``aesthetic-v2-l14``, ``q16-b32``, ...);
    - ``.zip``: LAION's NSFW detector SavedModel (read without TensorFlow), p(unsafe);
    - ``.pth`` / ``.pt`` / ``.bin``: a torch state dict of Linear layers applied in key order with no
      activation between them (the aesthetic predictors' architecture), ``weights_only`` loading;
    - ``.safetensors``: an MLP of Linear layers; its metadata may say ``{"activation": "relu"}``
      (between layers) and ``{"output": "sigmoid"}`` (probes saved by :mod:`workbench.models.probe` do);
    - ``.npy``: a ``(2, d)`` prompt pair scored like Q16, ``softmax(100 * cos(x, prompts))[:, 1]``.
    """
    s = str(path)
    if s in HEADS:
        return head(s, data_dir)
    p = Path(path)
    if not p.exists():
        raise HeadFileError(f"no such head file, and not a known head name (known: {', '.join(sorted(HEADS))})", p)
    suffix = p.suffix.lower()
    if suffix == ".zip":
        return nsfw_detector_zip(p)
    if suffix in (".pth", ".pt", ".bin"):
        return torch_mlp(p)
    if suffix == ".safetensors":
        return safetensors_head(p)
    if suffix == ".npy":
        return prompt_pair_head(p)
    raise HeadFileError("unknown head format: give a .zip (NSFW SavedModel), .pth/.pt, .safetensors or "
                        "(2, d) .npy file, or a head name", p)
