"""Published detector heads as numpy functions of L2-normalised CLIP image embeddings.

Every head maps a float32 ``(n, d)`` array to a float32 ``(n,)`` score. No TensorFlow is used
and nothing untrusted is unpickled: the Keras NSFW detectors are read with the hand-written
tensor-bundle/protobuf reader in :mod:`workbench.tfbundle`; the torch ``.pth`` heads with
``torch.load(..., weights_only=True)`` (torch is imported lazily, only by those loaders); the
``.npy`` prompt files with ``np.load(allow_pickle=False)``; the yml with ``yaml.safe_load``.

Registry::

    from workbench.heads import head, HEADS
    punsafe = head("nsfw-l14")(emb)          # (n,) in [0, 1]
    HEADS["nsfw-l14"].dim                    # 768

Heads: ``nsfw-l14``, ``nsfw-b32`` (p(unsafe)), ``aesthetic-v2-l14``, ``aesthetic-v1-b32``,
``aesthetic-v1-l14`` (score, about 1-10), ``q16-b32``, ``q16-l14`` (p(inappropriate)),
``violence-b32``, ``violence-l14`` (margin; ``> 0`` means flagged). The data directory defaults
to ``$WORKBENCH_HEADS_DIR`` or ``<repo>/../shared/data/heads``.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

from workbench.errors import WorkbenchError
from workbench.tfbundle import BundleError, _varint, parse_proto, read_bundle_from_zip, read_zip_member


class ModelMismatchError(WorkbenchError):
    """Embeddings of the wrong width (or shape) were given to a head."""


class HeadFileError(WorkbenchError):
    """A head's weight file is missing, truncated, or not what it should be."""


def default_heads_dir() -> Path:
    env = os.environ.get("WORKBENCH_HEADS_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1].parent / "shared" / "data" / "heads"


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


# ---------------------------------------------------------------- NSFW (AutoKeras SavedModel)

_NSFW_FILES = {"l14": ("laion_nsfw_detector/clip_autokeras_binary_nsfw.zip", 768),
               "b32": ("laion_nsfw_detector/clip_autokeras_nsfw_b32.zip", 512)}
_VAR = "layer_with_weights-{}/{}/.ATTRIBUTES/VARIABLE_VALUE"


def _keras_layers(meta: bytes, path) -> list[dict]:
    """The Functional model config (the first JSON string in keras_metadata.pb)."""
    import json
    for _f, _w, node in parse_proto(meta, "keras_metadata.pb"):  # 1 = repeated SavedObject
        for f2, _w2, v2 in parse_proto(node, "keras_metadata.pb node"):
            if f2 == 5 and isinstance(v2, bytes) and v2.startswith(b"{"):  # metadata JSON
                cfg = json.loads(v2)
                if cfg.get("class_name") == "Functional":
                    return cfg["config"]["layers"]
    raise HeadFileError("keras_metadata.pb has no Functional model config", path)


def _vocabularies(saved_model: bytes, path) -> list[dict[bytes, int]]:
    """StringLookup vocabularies baked into saved_model.pb, in graph (Const_N) order.

    Each table is a pair of top-level ``Const`` nodes: a DT_STRING keys tensor followed by a
    DT_INT64 values tensor of the same length (indices 1..N; 0 is the OOV index).
    """
    sm = parse_proto(saved_model, "saved_model.pb")
    consts = []
    for f, _w, mg in sm:
        if f != 2:
            continue
        for f2, _w2, gd in parse_proto(mg, "MetaGraphDef"):
            if f2 != 2:
                continue
            for f3, _w3, node in parse_proto(gd, "GraphDef"):
                if f3 != 1:
                    continue
                nf = parse_proto(node, "NodeDef")
                op = next((v for ff, _, v in nf if ff == 2), b"")
                name = next((v for ff, _, v in nf if ff == 1), b"").decode()
                if op != b"Const":
                    continue
                for ff, _, attr in nf:
                    if ff != 5:
                        continue
                    kv = {k: v for k, _, v in parse_proto(attr, "attr")}
                    if kv.get(1) != b"value":
                        continue
                    av = parse_proto(kv.get(2, b""), "AttrValue")
                    tensor = next((v for k, _, v in av if k == 8), None)
                    if tensor is None:
                        continue
                    tp = parse_proto(tensor, "TensorProto")
                    dtype = next((v for k, _, v in tp if k == 1), 0)
                    if dtype == 7:
                        consts.append((name, "str", [v for k, _, v in tp if k == 8]))
                    elif dtype == 9:
                        content = next((v for k, _, v in tp if k == 4), None)
                        vals = (np.frombuffer(content, "<i8") if content is not None
                                else np.array(_int64_vals(tp), np.int64))
                        consts.append((name, "i64", vals))
        break

    def order(c):
        m = re.fullmatch(r"Const(?:_(\d+))?", c[0])
        return int(m.group(1) or 0) if m else 1 << 30

    consts.sort(key=order)
    tables = []
    for (_n1, k1, keys), (_n2, k2, vals) in zip(consts, consts[1:]):
        if k1 == "str" and k2 == "i64" and len(keys) == len(vals) and keys and \
                all(re.fullmatch(rb"-?\d+\.\d+", s) for s in keys[:5]):
            tables.append(dict(zip(keys, (int(v) for v in vals))))
    return tables


def _int64_vals(tp) -> list[int]:
    """TensorProto.int64_val (field 10), packed or not."""
    out = []
    for k, w, v in tp:
        if k != 10:
            continue
        if w == 2:
            pos = 0
            while pos < len(v):
                n, pos = _varint(v, pos, "packed int64_val")
                out.append(n - (1 << 64) if n >= 1 << 63 else n)
        else:
            out.append(v - (1 << 64) if v >= 1 << 63 else v)
    return out


def _format_f(values: np.ndarray) -> list[bytes]:
    # tf.strings.as_string on float64 with default arguments is C "%f" (6 decimals).
    return [b"%f" % v for v in values.astype(np.float64)]


def nsfw_detector(model: str = "l14", data_dir: str | Path | None = None,
                  categorical: str = "lookup") -> Head:
    """LAION's CLIP-based NSFW detector (AutoKeras, TF SavedModel), p(unsafe) per row.

    Variables (``variables/variables.index`` + data shard, read from inside the zip):
    ``layer_with_weights-0/encoding_layers/<col>/token_counts`` (empty adapt accumulators),
    ``layer_with_weights-1/{mean,variance,count}`` (Normalization), and
    ``layer_with_weights-{2..}/{kernel,bias}`` (Dense layers in order; keras_metadata.pb confirms
    the chain input -> MultiCategoryEncoding -> Normalization -> Dense -> ReLU -> ... -> Dense ->
    sigmoid). Forward pass: ``(enc(x) - mean) / max(sqrt(var), 1e-7)``, then Dense+ReLU blocks and
    a final Dense + sigmoid.

    Categorical columns (L/14: 180, 316, 413, 440, 644; B/32: 92, 133, 312): keras_metadata.pb
    declares them ``"int"`` in AutoKeras' MultiCategoryEncoding, each backed by a ``StringLookup``
    (``num_oov_indices=1, mask_token=None`` -> OOV index 0). The ``token_counts`` tables in the
    bundle are empty, but they are only the adapt accumulators: the deployed vocabularies are
    baked into ``saved_model.pb`` as ``Const`` string/int64 pairs (B/32: 1566, 747, 745 entries;
    values like ``b"-0.562500"``, i.e. float16 CLIP values printed with ``%f``; indices 1..N).
    AutoKeras feeds ``tf.strings.as_string(x)`` (C ``%f``) of the float64 input to the lookup,
    and the Normalization mean/variance at those columns (e.g. 227 / 38629 for B/32 col 92) are
    those of the indices, not of embedding values. So with ``categorical="lookup"`` (default)
    we reproduce that: the column value is the vocabulary index of ``"%f" % x`` or 0 when absent.
    Inputs that were float16 (as LAION's embedding dumps) hit the vocabulary; float32 values
    usually miss and get 0. Unverified against TensorFlow: the Const-order -> column mapping
    (we assume the tables appear in column order, as the layers are built) and exact ``%f``
    rounding of every value. ``categorical="oov"`` feeds the constant 0 everywhere instead.
    """
    if model not in _NSFW_FILES:
        raise ValueError(f"nsfw model must be one of {sorted(_NSFW_FILES)}, got {model!r}")
    rel, dim = _NSFW_FILES[model]
    return nsfw_detector_zip(Path(data_dir or default_heads_dir()) / rel, f"nsfw-{model}", categorical, dim)


def nsfw_detector_zip(path: str | Path, name: str | None = None, categorical: str = "lookup",
                      dim: int | None = None) -> Head:
    """The NSFW detector read from any copy of its SavedModel zip (see :func:`nsfw_detector`)."""
    if categorical not in ("lookup", "oov"):
        raise ValueError("categorical must be 'lookup' or 'oov'")
    path = _need_file(Path(path))
    name = name or Path(path).stem
    bundle = read_bundle_from_zip(path)
    meta = read_zip_member(path, "keras_metadata.pb")
    layers = _keras_layers(meta, path)
    enc = next((l for l in layers if l["class_name"].endswith("MultiCategoryEncoding")), None)
    cat_cols = [i for i, e in enumerate(enc["config"]["encoding"]) if e != "none"] if enc else []
    try:
        mean = bundle.get(_VAR.format(1, "mean")).astype(np.float32)
        var = bundle.get(_VAR.format(1, "variance")).astype(np.float32)
        dense = []
        i = 2
        while _VAR.format(i, "kernel") in bundle.entries:
            dense.append((bundle.get(_VAR.format(i, "kernel")).astype(np.float32),
                          bundle.get(_VAR.format(i, "bias")).astype(np.float32)))
            i += 1
    except BundleError as exc:
        raise HeadFileError(exc.reason, path) from None
    if dim is None:
        dim = int(mean.shape[0]) if mean.ndim == 1 else -1
    if mean.shape != (dim,) or not dense or dense[0][0].shape[0] != dim or dense[-1][0].shape[1] != 1:
        raise HeadFileError(f"unexpected NSFW detector layout (mean {mean.shape}, "
                            f"{[k.shape for k, _ in dense]})", path)
    n_dense_cfg = sum(1 for l in layers if l["class_name"] == "Dense")
    if n_dense_cfg != len(dense):
        raise HeadFileError(f"keras_metadata.pb has {n_dense_cfg} Dense layers, bundle has {len(dense)}",
                            path)
    vocabs: list[dict[bytes, int]] = []
    if categorical == "lookup" and cat_cols:
        vocabs = _vocabularies(read_zip_member(path, "saved_model.pb"), path)
        if len(vocabs) != len(cat_cols):
            raise HeadFileError(f"found {len(vocabs)} lookup vocabularies for {len(cat_cols)} "
                                "categorical columns", path)
    std = np.maximum(np.sqrt(var), np.float32(1e-7))

    def fn(x: np.ndarray) -> np.ndarray:
        x64 = np.asarray(x, dtype=np.float64)
        h = np.nan_to_num(x64.astype(np.float32), nan=0.0)
        for col, vocab in zip(cat_cols, vocabs or [None] * len(cat_cols)):
            if vocab is None:
                h[:, col] = 0.0
            else:
                h[:, col] = [vocab.get(s, 0) for s in _format_f(x64[:, col])]
        h = (h - mean) / std
        for j, (k, b) in enumerate(dense):
            h = h @ k + b
            if j < len(dense) - 1:
                np.maximum(h, 0.0, out=h)
        return _sigmoid(h[:, 0])

    return Head(name, dim, fn, kind="probability", source=str(path),
                info={"categorical_columns": cat_cols, "categorical": categorical,
                      "layers": [k.shape for k, _ in dense],
                      "vocab_sizes": [len(v) for v in vocabs]})


# ---------------------------------------------------------------- torch / safetensors MLPs

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
    path = Path(data_dir or default_heads_dir()) / "improved_aesthetic_predictor/sac+logos+ava1-l14-linearMSE.pth"
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
        raise ValueError(f"aesthetic v1 model must be one of {sorted(names)}")
    path = Path(data_dir or default_heads_dir()) / "laion_aesthetic_v1" / names[model]
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


# ---------------------------------------------------------------- prompt heads

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
        raise ValueError(f"q16 model must be one of {sorted(sub)}")
    path = Path(data_dir or default_heads_dir()) / "q16" / sub[model] / "prompts.npy"
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
        raise ValueError(f"violence model must be one of {sorted(names)}")
    path = Path(data_dir or default_heads_dir()) / "laion_nsfw_detector" / names[model]
    p = _load_prompts(path)

    def margin(x: np.ndarray) -> np.ndarray:
        s = np.asarray(x, np.float32) @ p.T
        return s[:, 1] - s[:, 0]

    h = Head(f"violence-{model}", p.shape[1], margin, kind="margin", source=str(path))
    h.flagged = lambda x: np.argmax(np.asarray(h.check(x), np.float32) @ p.T, axis=1) == 1  # type: ignore[attr-defined]
    return h


def is_violent(x, model: str = "l14", data_dir: str | Path | None = None) -> np.ndarray:
    """Boolean per row: ``argmax(img @ P.T) == 1``."""
    return head(f"violence-{model}", data_dir).flagged(x)  # type: ignore[attr-defined]


# ---------------------------------------------------------------- safety settings

def safety_settings(data_dir: str | Path | None = None) -> dict[str, dict]:
    """``safety_settings.yml``: ``{group: {"concepts": {concept: cosine threshold}, "action": ...}}``.

    The file is parsed and exposed only: the concept embeddings it is meant to be compared with
    (Stable Diffusion's safety checker style) are not shipped, so no scorer is built from it.
    Keys are coerced to ``str`` (YAML would read some concepts as numbers), thresholds to float.
    """
    import yaml

    path = _need_file(Path(data_dir or default_heads_dir()) / "laion_nsfw_detector" / "safety_settings.yml")
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
    """Build (and cache) a registered head by name."""
    if name not in HEADS:
        raise WorkbenchError(f"unknown head {name!r}; known: {', '.join(sorted(HEADS))}")
    return _build(name, str(Path(data_dir) if data_dir else default_heads_dir()))


# ---------------------------------------------------------------- any head from a file

def load_head(path: str | Path, data_dir: str | Path | None = None) -> Head:
    """A head from a registered name or a file; call it on an ``(n, d)`` array to get ``n`` scores.

    - a name from :data:`HEADS` (``nsfw-l14``, ``aesthetic-v2-l14``, ``q16-b32``, ...);
    - ``.zip``: LAION's NSFW detector SavedModel (read without TensorFlow), p(unsafe);
    - ``.pth`` / ``.pt`` / ``.bin``: a torch state dict of Linear layers applied in key order with no
      activation between them (the aesthetic predictors' architecture), ``weights_only`` loading;
    - ``.safetensors``: an MLP of Linear layers; its metadata may say ``{"activation": "relu"}``
      (between layers) and ``{"output": "sigmoid"}`` (probes saved by :mod:`workbench.probe` do);
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
        chain = _linear_chain(_torch_state_dict(p), p)
        return Head(p.stem, chain[0][0].shape[0], _mlp_fn(chain), source=str(p))
    if suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(p), framework="numpy") as f:
                meta = f.metadata() or {}
        except Exception as exc:  # noqa: BLE001
            raise HeadFileError(f"cannot read safetensors ({type(exc).__name__}: {exc})", p) from None
        h = load_safetensors_mlp(p, relu=meta.get("activation") == "relu", sigmoid=meta.get("output") == "sigmoid")
        if meta.get("output") == "sigmoid":
            h.kind = "probability"
        return h
    if suffix == ".npy":
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
    raise HeadFileError("unknown head format: give a .zip (NSFW SavedModel), .pth/.pt, .safetensors or "
                        "(2, d) .npy file, or a head name", p)
