"""Prompt-embedding heads: Q16 and the violence prompts (a ``(2, d)`` pair of prompt embeddings
compared with each image), any ``(2, d)`` ``.npy`` prompt pair, and the safety-concept settings.

``.npy`` files are read with ``np.load(allow_pickle=False)``; the yml with ``yaml.safe_load``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from workbench.errors import ConfigError, HeadFileError
from workbench.models.headbase import Head, _need_file, head_path

DATA = Path(__file__).resolve().parent / "data"  # text shipped with the package (see data/README.md)


def _load_prompts(path: Path, dim: int | None = None) -> np.ndarray:
    _need_file(path)
    try:
        p = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise HeadFileError(f"cannot read prompt embeddings ({exc})", path) from None
    if p.ndim != 2 or p.shape[0] != 2 or (dim is not None and p.shape[1] != dim):
        raise HeadFileError(f"expected a (2, d) array, found {p.shape}", path)
    return p.astype(np.float32)


def q16(model: str = "l14", data_dir: str | Path | None = None) -> Head:
    """Q16: p(inappropriate) = softmax(100 * cos(img, prompts))[:, 1]; prompts normalised here,
    images used as given (pass L2-normalised embeddings). ``head.probs(x)`` gives both columns."""
    sub = {"b32": "ViT-B-32", "l14": "ViT-L-14"}
    if model not in sub:
        raise ConfigError(f"q16 model must be one of {sorted(sub)}, got {model!r}")
    path = head_path(f"q16/{sub[model]}/prompts.npy", data_dir)
    p = _load_prompts(path)
    p = p / np.linalg.norm(p, axis=1, keepdims=True)

    def probs(x: np.ndarray) -> np.ndarray:
        z = 100.0 * (np.asarray(x, np.float32) @ p.T)
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)

    h = Head(f"q16-{model}", p.shape[1], lambda x: probs(x)[:, 1], kind="probability",
             source=str(path))
    h.probs = lambda x: probs(h.check(x))  # type: ignore[attr-defined]
    return h


def violence(model: str = "l14", data_dir: str | Path | None = None) -> Head:
    """Violence prompts: score = img @ P[1] - img @ P[0] (raw P, as shipped); flagged when
    ``argmax(img @ P.T) == 1``, i.e. score > 0. ``head.flagged(x)`` gives the boolean."""
    names = {"b32": "violence_detection_vit_b_32.npy", "l14": "violence_detection_vit_l_14.npy"}
    if model not in names:
        raise ConfigError(f"violence model must be one of {sorted(names)}, got {model!r}")
    path = head_path(f"laion_nsfw_detector/{names[model]}", data_dir)
    p = _load_prompts(path)

    def margin(x: np.ndarray) -> np.ndarray:
        s = np.asarray(x, np.float32) @ p.T
        return s[:, 1] - s[:, 0]

    h = Head(f"violence-{model}", p.shape[1], margin, kind="margin", source=str(path))
    h.flagged = lambda x: np.argmax(np.asarray(h.check(x), np.float32) @ p.T, axis=1) == 1  # type: ignore[attr-defined]
    return h



def prompt_pair_head(path: str | Path) -> Head:
    """A ``(2, d)`` ``.npy`` prompt pair scored like Q16: ``softmax(100 * cos(x, prompts))[:, 1]``."""
    p = Path(path)
    prompts = _load_prompts(p)
    prompts = prompts / np.linalg.norm(prompts, axis=1, keepdims=True)

    def fn(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32)
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        z = 100.0 * (x @ prompts.T)
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e[:, 1] / e.sum(axis=1)

    return Head(p.stem, prompts.shape[1], fn, kind="probability", source=str(p))


# ---------------------------------------------------------------- safety settings

def safety_settings(data_dir: str | Path | None = None) -> dict[str, dict]:
    """``safety_settings.yml``: ``{group: {"concepts": {concept: cosine threshold}, "action": ...}}``.

    Read from `data_dir`'s ``laion_nsfw_detector/`` when a folder is given, else the copy shipped
    with the package (``workbench/models/data/safety_settings.yml``, MIT, from
    LAION-AI/CLIP-based-NSFW-Detector). The file is parsed and exposed only: the concept embeddings it is meant to be compared with
    (Stable Diffusion's safety checker style) are not shipped, so no scorer is built from it.
    Keys are coerced to ``str`` (YAML would read some concepts as numbers), thresholds to float.
    """
    import yaml

    path = _need_file(Path(data_dir) / "laion_nsfw_detector" / "safety_settings.yml" if data_dir
                      else DATA / "safety_settings.yml")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise HeadFileError(f"cannot parse YAML ({exc})", path) from None
    if not isinstance(raw, dict):
        raise HeadFileError("expected a mapping at top level", path)
    out = {}
    for group, body in raw.items():
        if not isinstance(body, dict) or not isinstance(body.get("concepts"), dict):
            raise HeadFileError(f"group {group!r} has no concepts mapping", path)
        out[str(group)] = {"concepts": {str(k): float(v) for k, v in body["concepts"].items()},
                           **{str(k): v for k, v in body.items() if k != "concepts"}}
    return out
