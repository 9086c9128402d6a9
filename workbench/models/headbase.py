"""The head object every detector head is, and where the shipped head files live.

A :class:`Head` maps a float32 ``(n, d)`` array of L2-normalised CLIP image embeddings to a float32
``(n,)`` score; it refuses other widths with :class:`~workbench.errors.ModelMismatchError`. A
missing head file is a :class:`~workbench.errors.HeadFileError`. :func:`head_path` finds a published
head's file: in a folder given by the caller, else in the heads folder
(``$WORKBENCH_HEADS_DIR``, default ``~/.cache/laion-workbench/heads``), fetched there on first use
(:mod:`workbench.models.headfiles`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from workbench.errors import HeadFileError, ModelMismatchError
from workbench.models.headfiles import BY_REL, default_heads_dir, ensure_file  # noqa: F401  (re-exported)


def head_path(rel: str, data_dir: str | Path | None = None) -> Path:
    """The path of a published head's file (`rel`, its path inside a heads folder): under `data_dir`
    when one is given (it must be there), else in the heads folder, fetched on first use."""
    if data_dir is None:
        return ensure_file(rel)
    path = Path(data_dir) / rel
    if not path.is_file():
        f = BY_REL.get(rel)
        hint = f" (`workbench heads fetch {f.name}` fetches it into the heads folder; upstream: {f.url})" if f else ""
        raise HeadFileError("head file not found" + hint, path)
    return path


# ---------------------------------------------------------------- the scorer object

@dataclass
class Head:
    """A scoring function with its name and expected input width; call it on ``(n, dim)``."""

    name: str
    dim: int
    fn: Callable[[np.ndarray], np.ndarray]
    kind: str = "score"
    source: str = ""
    info: dict = field(default_factory=dict)

    def check(self, x) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2:
            raise ModelMismatchError(f"head {self.name!r} expects (n, {self.dim}) embeddings, "
                                     f"got an array of shape {x.shape}")
        if x.shape[1] != self.dim:
            raise ModelMismatchError(f"head {self.name!r} expects {self.dim}-d embeddings, "
                                     f"got {x.shape[1]}-d")
        return x

    def __call__(self, x) -> np.ndarray:
        return np.asarray(self.fn(self.check(x)), dtype=np.float32).reshape(-1)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return (0.5 * (1.0 + np.tanh(0.5 * z))).astype(np.float32)


def _need_file(path: Path) -> Path:
    if not path.is_file():
        raise HeadFileError("head file not found", path)
    return path
