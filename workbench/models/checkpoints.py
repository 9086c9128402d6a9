"""Checkpoint files read safely: nothing untrusted is ever unpickled.

``.safetensors`` files are read with safetensors; ``.pt`` / ``.pth`` / ``.bin`` (and ``.ckpt``) with
``torch.load(weights_only=True)``, so a pickle that holds anything but tensors is refused, never run.
The usual wrappers are removed (``{"state_dict": ...}``, ``{"model": ...}``, ``module.`` key
prefixes); :func:`load_weights` then requires every weight of the architecture to be present.
Errors are :class:`~workbench.models.spec.CheckpointError` (unreadable, truncated, unsafe) and
:class:`~workbench.errors.ModelMismatchError` (the wrong architecture for the weights).

torch is imported only inside the functions.
"""
from __future__ import annotations

import re
from pathlib import Path

from workbench.errors import ModelMismatchError
from workbench.io.files import sha256_file  # noqa: F401  (re-exported: a checkpoint's identity)
from workbench.errors import CheckpointError


def _sniff(path: Path) -> str:
    """'safetensors', 'zip' (torch.save), 'pickle' (legacy torch.save), 'npz' or 'unknown'."""
    with open(path, "rb") as f:
        head = f.read(16)
    if head[:2] == b"PK":
        return "npz" if path.suffix.lower() == ".npz" else "zip"
    if len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") + 8 <= path.stat().st_size:
        return "safetensors"
    if head[:1] == b"\x80":
        return "pickle"
    return "unknown"


def read_state_dict(path: str | Path) -> dict:
    """Tensors of a checkpoint: safetensors, or torch.load(weights_only=True); wrappers removed."""
    import torch

    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError("checkpoint not found" if not path.exists() else "checkpoint is not a file", path)
    kind = _sniff(path)
    if kind == "npz":
        raise CheckpointError("numpy (big_vision) checkpoints are not supported: convert to .safetensors", path)
    if path.suffix.lower() == ".safetensors" or kind == "safetensors":
        from safetensors.torch import load_file

        try:
            obj = load_file(str(path), device="cpu")
        except Exception as exc:
            raise CheckpointError(f"not a readable safetensors file ({exc})", path) from None
    elif kind == "unknown":
        raise CheckpointError("not a checkpoint (neither safetensors nor a torch.save file)", path)
    else:
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:
            raise CheckpointError(_torch_load_reason(exc), path) from None
    return _unwrap_state_dict(obj, path)


def _torch_load_reason(exc: Exception) -> str:
    text = str(exc)
    m = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if m:
        return (f"refused: the pickle holds Python objects, not just tensors (it calls {m.group(1)}); "
                "nothing was executed. Re-save the weights as .safetensors or a plain state dict")
    if "Weights only load failed" in text:
        m = re.search(r"WeightsUnpickler error:\s*(.+)", text)
        why = m.group(1).strip() if m else "unsupported content"
        return f"refused: not a plain tensor checkpoint ({why}); nothing was executed"
    if isinstance(exc, EOFError) or "central directory" in text or "zip archive" in text:
        return "truncated or corrupt checkpoint (torch could not read it)"
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return f"cannot read checkpoint ({first})"


def _unwrap_state_dict(obj, path: Path) -> dict:
    import torch

    for _ in range(3):  # {"state_dict": {...}}, {"model": {...}}, {"state_dict": {"model": ...}}
        if isinstance(obj, dict) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
            inner = next((obj[k] for k in ("state_dict", "model", "module", "model_state_dict")
                          if isinstance(obj.get(k), dict)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError("not a state dict (no name -> tensor mapping found)", path)
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if len(tensors) != len(obj) or not all(isinstance(k, str) for k in obj):
        bad = [str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor)][:5]
        raise CheckpointError(f"not a state dict: entries that are not tensors: {bad}", path)
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    return tensors


def load_weights(model, path: Path) -> None:
    """Load a checkpoint into ``model`` with open_clip's own conversions; every weight must match."""
    from open_clip.convert import convert_state_dict
    from open_clip.model import convert_to_custom_text_state_dict, resize_pos_embed, resize_text_pos_embed

    sd = read_state_dict(path)
    try:
        sd = convert_state_dict(model, sd)
        if "positional_embedding" in sd and not hasattr(model, "positional_embedding"):
            sd = convert_to_custom_text_state_dict(sd)
        for key in ("logit_scale", "logit_bias"):
            own = getattr(model, key, None)
            if key in sd and own is not None and own.ndim != sd[key].ndim:
                sd[key] = sd[key].reshape(own.shape)
        sd.pop("text.transformer.embeddings.position_ids", None)
        resize_pos_embed(sd, model)
        resize_text_pos_embed(sd, model)
    except Exception as exc:
        raise ModelMismatchError(f"checkpoint does not fit the architecture ({exc})", path) from None
    own = model.state_dict()
    missing = [k for k in own if k not in sd and k not in ("logit_scale", "logit_bias")]
    unexpected = [k for k in sd if k not in own]
    wrong = [f"{k} {tuple(sd[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
             if k in sd and tuple(sd[k].shape) != tuple(v.shape)]
    if missing or unexpected or wrong:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if keys:
                more = f" (+{len(keys) - 5} more)" if len(keys) > 5 else ""
                parts.append(f"{len(keys)} {label}: {', '.join(keys[:5])}{more}")
        raise ModelMismatchError("checkpoint does not match the model architecture: " + "; ".join(parts)
                                 + " (wrong model name or config for this checkpoint?)", path)
    model.load_state_dict(sd, strict=False)
