"""MLP heads: the LAION aesthetic predictors (torch ``.pth``) and any MLP saved as safetensors.

torch ``.pth`` files are read with ``torch.load(..., weights_only=True)`` (torch is imported lazily,
only by those loaders); safetensors files with ``safetensors.numpy`` (no torch). Linear layers are
taken in natural key order of their ``<prefix>.weight`` / ``.bias`` keys.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from workbench.errors import ConfigError, HeadFileError
from workbench.models.headbase import Head, _need_file, _sigmoid, head_path


def _torch_state_dict(path: Path) -> dict[str, np.ndarray]:
    import torch  # lazy: only the .pth loaders need it

    _need_file(path)
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds on bad files
        raise HeadFileError(f"cannot load torch state dict safely ({type(exc).__name__}: {exc})",
                            path) from None
    if not isinstance(sd, dict):
        raise HeadFileError(f"expected a state dict, found {type(sd).__name__}", path)
    return {k: v.detach().cpu().numpy().astype(np.float32) for k, v in sd.items()}


def _natural_key(s: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def _linear_chain(sd: dict[str, np.ndarray], path) -> list[tuple[np.ndarray, np.ndarray]]:
    """Linear layers ``<prefix>.weight`` (out, in) / ``<prefix>.bias`` in natural key order."""
    prefixes = sorted({k[: -len(".weight")] for k in sd if k.endswith(".weight")} |
                      ({""} if "weight" in sd else set()), key=_natural_key)
    chain = []
    for p in prefixes:
        w = sd[f"{p}.weight" if p else "weight"]
        b = sd.get(f"{p}.bias" if p else "bias")
        if w.ndim != 2:
            raise HeadFileError(f"{p or 'weight'}: not a Linear weight (shape {w.shape})", path)
        if b is None:
            b = np.zeros(w.shape[0], np.float32)
        if chain and chain[-1][0].shape[1] != w.shape[1]:
            raise HeadFileError(f"layer {p!r} takes {w.shape[1]} inputs but the previous layer "
                                f"gives {chain[-1][0].shape[1]}", path)
        chain.append((np.ascontiguousarray(w.T), b.reshape(-1)))
    if not chain:
        raise HeadFileError("no Linear layers found", path)
    return chain


def _mlp_fn(chain, relu: bool = False, sigmoid: bool = False):
    def fn(x: np.ndarray) -> np.ndarray:
        h = np.asarray(x, dtype=np.float32)
        for j, (wt, b) in enumerate(chain):
            h = h @ wt + b
            if relu and j < len(chain) - 1:
                np.maximum(h, 0.0, out=h)
        out = h[:, 0]
        return _sigmoid(out) if sigmoid else out
    return fn


def aesthetic_v2(data_dir: str | Path | None = None) -> Head:
    """Improved aesthetic predictor v2: Linear 768->1024->128->64->16->1, no activations
    (dropouts are identity at inference); keys ``layers.{0,2,4,6,7}``."""
    path = head_path("improved_aesthetic_predictor/sac+logos+ava1-l14-linearMSE.pth", data_dir)
    sd = _torch_state_dict(path)
    want = [f"layers.{i}.{p}" for i in (0, 2, 4, 6, 7) for p in ("weight", "bias")]
    missing = [k for k in want if k not in sd]
    if missing:
        raise HeadFileError(f"missing keys {missing}", path)
    chain = _linear_chain(sd, path)
    return Head("aesthetic-v2-l14", chain[0][0].shape[0], _mlp_fn(chain), source=str(path))


def aesthetic_v1(model: str = "l14", data_dir: str | Path | None = None) -> Head:
    """LAION aesthetic predictor v1: one Linear(d, 1)."""
    names = {"b32": "sa_0_4_vit_b_32_linear.pth", "l14": "sa_0_4_vit_l_14_linear.pth"}
    if model not in names:
        raise ConfigError(f"aesthetic v1 model must be one of {sorted(names)}, got {model!r}")
    path = head_path(f"laion_aesthetic_v1/{names[model]}", data_dir)
    chain = _linear_chain(_torch_state_dict(path), path)
    return Head(f"aesthetic-v1-{model}", chain[0][0].shape[0], _mlp_fn(chain), source=str(path))


def load_safetensors_mlp(path: str | Path, relu: bool = False, sigmoid: bool = False,
                         name: str | None = None) -> Head:
    """Any torch MLP head saved as safetensors: Linear layers taken in natural key order of
    their ``<prefix>.weight``/``.bias`` keys; ReLU between layers if ``relu``; sigmoid on the
    output if ``sigmoid``. Reads with ``safetensors.numpy`` (no torch needed)."""
    from safetensors.numpy import load_file

    path = _need_file(Path(path))
    try:
        sd = {k: v.astype(np.float32) for k, v in load_file(str(path)).items()}
    except Exception as exc:  # noqa: BLE001
        raise HeadFileError(f"cannot read safetensors ({type(exc).__name__}: {exc})", path) from None
    chain = _linear_chain(sd, path)
    return Head(name or path.stem, chain[0][0].shape[0], _mlp_fn(chain, relu, sigmoid),
                source=str(path))




def torch_mlp(path: str | Path) -> Head:
    """A head from a torch state dict of Linear layers applied in key order with no activation between
    them (the aesthetic predictors' architecture), loaded with ``weights_only=True``."""
    p = Path(path)
    chain = _linear_chain(_torch_state_dict(p), p)
    return Head(p.stem, chain[0][0].shape[0], _mlp_fn(chain), source=str(p))


def safetensors_head(path: str | Path) -> Head:
    """An MLP head from a safetensors file whose metadata may say ``{"activation": "relu"}`` (between
    layers) and ``{"output": "sigmoid"}`` (then the head's kind is ``probability``)."""
    from safetensors import safe_open

    p = Path(path)
    try:
        with safe_open(str(p), framework="numpy") as f:
            meta = f.metadata() or {}
    except Exception as exc:  # noqa: BLE001
        raise HeadFileError(f"cannot read safetensors ({type(exc).__name__}: {exc})", p) from None
    h = load_safetensors_mlp(p, relu=meta.get("activation") == "relu", sigmoid=meta.get("output") == "sigmoid")
    if meta.get("output") == "sigmoid":
        h.kind = "probability"
    return h
