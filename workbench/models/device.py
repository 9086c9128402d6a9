"""Where torch work runs: one rule for every stage.

    resolve_device("auto")   # "cuda" when torch sees a CUDA device, else "cpu"
"""
from __future__ import annotations

from workbench.errors import WorkbenchError


def resolve_device(device: str | None = "auto", error: type[WorkbenchError] = WorkbenchError) -> str:
    """The torch device name for a user's `device`: ``"auto"`` (or None / empty) is ``"cuda"`` when
    torch sees a CUDA device, else ``"cpu"``; ``"cpu"``, ``"cuda"`` and ``"cuda:N"`` are kept (case and
    surrounding spaces ignored). Refused with `error` (a :class:`WorkbenchError` subclass, so a caller
    can raise its own kind): any other name, and a CUDA device when torch sees none. torch is imported
    here, on the first call, never at module import."""
    if device is not None and not isinstance(device, str):
        raise error(f"device must be 'auto', 'cpu' or 'cuda[:N]', not {device!r}")
    name = (device or "auto").strip().lower()
    if name not in ("auto", "cpu", "cuda") and not (name.startswith("cuda:") and name[5:].isdigit()):
        raise error(f"device must be 'auto', 'cpu' or 'cuda[:N]', not {device!r}")
    if name == "cpu":
        return name
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available():
        raise error(f"device {device!r} asked for, but CUDA is not available (torch sees no CUDA device): "
                    "use device='auto' or 'cpu'")
    return name
