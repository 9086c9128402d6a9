"""LAION's CLIP-based NSFW detectors (AutoKeras TF SavedModels) as numpy heads, without TensorFlow.

The variables are read with the hand-written tensor-bundle/protobuf reader in
:mod:`workbench.models.tfbundle`; the model's layer chain from ``keras_metadata.pb`` and its lookup
vocabularies from ``saved_model.pb``. See :func:`nsfw_detector` for the forward pass.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from workbench.errors import ConfigError, HeadFileError
from workbench.models.headbase import Head, _need_file, _sigmoid, head_path
from workbench.models.tfbundle import BundleError, _varint, parse_proto, read_bundle_from_zip, read_zip_member

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
    usually miss and get 0. The vocabularies are taken in Const order, one per categorical column
    in column order. Checked against TensorFlow's own outputs (the ``serving_default`` signature of
    both SavedModels, on float16, float32 and vocabulary-valued inputs; see
    ``tests/models/test_nsfw_golden.py``): they agree within 1e-7. ``categorical="oov"`` feeds the
    constant 0 everywhere instead (it is not what the released model computes).
    """
    if model not in _NSFW_FILES:
        raise ConfigError(f"nsfw model must be one of {sorted(_NSFW_FILES)}, got {model!r}")
    rel, dim = _NSFW_FILES[model]
    return nsfw_detector_zip(head_path(rel, data_dir), f"nsfw-{model}", categorical, dim)


def nsfw_detector_zip(path: str | Path, name: str | None = None, categorical: str = "lookup",
                      dim: int | None = None) -> Head:
    """The NSFW detector read from any copy of its SavedModel zip (see :func:`nsfw_detector`)."""
    if categorical not in ("lookup", "oov"):
        raise ConfigError(f"categorical must be 'lookup' or 'oov', got {categorical!r}")
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
