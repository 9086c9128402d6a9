"""Detector heads on the real published weight files, numpy only. They are fetched into the session's
heads folder through the normal path, from the shared copy as a local mirror (tests/conftest.py);
without the shared copy those tests skip."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, SHARED, needs_shared, unit_rows
from workbench.models import heads as H
from workbench.errors import WorkbenchError
from workbench.models.heads import HEADS, HeadFileError, ModelMismatchError, head

HEADS_DIR = SHARED / "data" / "heads"  # the byte copies, read directly as references
needs_heads = needs_shared("heads")


@needs_heads
def test_registry_dims_and_defaults():
    assert set(HEADS) == {"nsfw-l14", "nsfw-b32", "aesthetic-v2-l14", "aesthetic-v1-b32",
                          "aesthetic-v1-l14", "q16-b32", "q16-l14", "violence-b32", "violence-l14"}
    for name, spec in HEADS.items():
        h = head(name)
        assert h.dim == spec.dim == (768 if name.endswith("l14") else 512)
        y = h(unit_rows(5, h.dim, seed=1))
        assert y.shape == (5,) and y.dtype == np.float32 and np.all(np.isfinite(y))
    with pytest.raises(WorkbenchError, match="unknown head"):
        head("nsfw-xl")


@needs_heads
@pytest.mark.parametrize("name", ["nsfw-l14", "nsfw-b32"])
def test_nsfw_probabilities(name):
    h = head(name)
    x = unit_rows(400, h.dim, seed=3)
    y = h(x)
    assert np.all((y >= 0) & (y <= 1))
    np.testing.assert_array_equal(y, h(x.copy()))  # deterministic
    np.testing.assert_array_equal(y[:10], h(x[:10]))  # row-independent
    assert y.std() > 1e-3 and len(np.unique(y)) > 100  # not constant
    # behaves like a classifier: a direction and its opposite get different scores
    m = x[:8].mean(0)
    m /= np.linalg.norm(m)
    a, b = h(np.stack([m, -m]))
    assert a != b


@needs_heads
def test_nsfw_layer_chain_and_categorical_info():
    l14, b32 = head("nsfw-l14"), head("nsfw-b32")
    assert l14.info["layers"] == [(768, 64), (64, 512), (512, 256), (256, 1)]
    assert b32.info["layers"] == [(512, 32), (32, 32), (32, 1)]
    assert l14.info["categorical_columns"] == [180, 316, 413, 440, 644]
    assert b32.info["categorical_columns"] == [92, 133, 312]
    assert b32.info["vocab_sizes"] == [1566, 747, 745]
    assert len(l14.info["vocab_sizes"]) == 5 and min(l14.info["vocab_sizes"]) > 1000


@needs_heads
def test_nsfw_categorical_lookup_vs_oov():
    look = H.nsfw_detector("b32", HEADS_DIR)
    oov = H.nsfw_detector("b32", HEADS_DIR, categorical="oov")
    x = unit_rows(50, 512, seed=4)
    # a value that is in column 92's vocabulary ("-0.562500") changes that column's encoding
    x16 = x.copy()
    x16[:, 92] = -0.5625
    assert not np.allclose(look(x16), oov(x16))
    assert np.all(np.isfinite(oov(x)))
    with pytest.raises(ValueError):
        H.nsfw_detector("b32", HEADS_DIR, categorical="mean")


@needs_heads
def test_aesthetic_v2_range():
    h = head("aesthetic-v2-l14")
    y = h(unit_rows(1000, 768, seed=5))
    # observed on random unit vectors: about 2.8 .. 7.6, mean 5.3
    assert 1.0 < y.min() and y.max() < 10.0
    assert 4.0 < y.mean() < 6.5 and y.std() > 0.2


@needs_heads
def test_aesthetic_v2_matches_torch_reference():
    import torch

    sd = torch.load(HEADS_DIR / "improved_aesthetic_predictor/sac+logos+ava1-l14-linearMSE.pth",
                    map_location="cpu", weights_only=True)
    x = unit_rows(16, 768, seed=6)
    t = torch.from_numpy(x)
    for i in (0, 2, 4, 6, 7):
        t = t @ sd[f"layers.{i}.weight"].T + sd[f"layers.{i}.bias"]
    np.testing.assert_allclose(head("aesthetic-v2-l14")(x), t[:, 0].numpy(), rtol=1e-4, atol=1e-4)


@needs_heads
@pytest.mark.parametrize("name,dim", [("aesthetic-v1-b32", 512), ("aesthetic-v1-l14", 768)])
def test_aesthetic_v1(name, dim):
    y = head(name)(unit_rows(500, dim, seed=7))
    assert y.std() > 0.1 and -5 < y.mean() < 10


@needs_heads
@pytest.mark.parametrize("name,dim", [("q16-b32", 512), ("q16-l14", 768)])
def test_q16(name, dim):
    h = head(name)
    x = unit_rows(200, dim, seed=8)
    p = h.probs(x)
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(h(x), p[:, 1], atol=1e-7)
    assert np.all((p >= 0) & (p <= 1)) and p[:, 1].std() > 0.01
    # an image equal to the inappropriate prompt is flagged with high probability
    raw = np.load(HEADS_DIR / "q16" / ("ViT-B-32" if dim == 512 else "ViT-L-14") / "prompts.npy",
                  allow_pickle=False).astype(np.float32)
    u = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    assert h(u[1:2])[0] > 0.5 > h(u[0:1])[0]


@needs_heads
@pytest.mark.parametrize("name,dim", [("violence-b32", 512), ("violence-l14", 768)])
def test_violence(name, dim):
    h = head(name)
    x = unit_rows(300, dim, seed=9)
    P = np.load(h.source, allow_pickle=False)
    want = np.argmax(x @ P.T, axis=1) == 1
    np.testing.assert_array_equal(h.flagged(x), want)
    np.testing.assert_array_equal(h(x) > 0, want)
    assert 0 < want.sum() < len(want)
    np.testing.assert_array_equal(H.is_violent(x, name[-3:]), want)
    assert h.flagged(P[1] / np.linalg.norm(P[1]))[0]


@needs_heads
@pytest.mark.parametrize("name", sorted(HEADS))
def test_dim_mismatch_is_clear(name):
    h = head(name)
    wrong = 512 if h.dim == 768 else 768
    with pytest.raises(ModelMismatchError) as ei:
        h(unit_rows(3, wrong, seed=0))
    msg = str(ei.value)
    assert name in msg and str(h.dim) in msg and str(wrong) in msg
    with pytest.raises(ModelMismatchError):
        h(np.zeros((2, 3, h.dim), np.float32))


def _copy_heads(tmp_path: Path) -> Path:
    d = tmp_path / "heads"
    shutil.copytree(HEADS_DIR, d)
    for p in d.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    return d


@needs_heads
@pytest.mark.parametrize("name,rel", [
    ("nsfw-b32", "laion_nsfw_detector/clip_autokeras_nsfw_b32.zip"),
    ("nsfw-l14", "laion_nsfw_detector/clip_autokeras_binary_nsfw.zip"),
    ("aesthetic-v2-l14", "improved_aesthetic_predictor/sac+logos+ava1-l14-linearMSE.pth"),
    ("q16-b32", "q16/ViT-B-32/prompts.npy"),
])
def test_truncated_file_names_it(tmp_path, name, rel):
    d = _copy_heads(tmp_path)
    f = d / rel
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 3])
    with pytest.raises(WorkbenchError) as ei:
        head(name, d)
    assert str(f) in str(ei.value)


@needs_heads
def test_missing_file_names_it(tmp_path):
    d = _copy_heads(tmp_path)
    f = d / "laion_aesthetic_v1/sa_0_4_vit_b_32_linear.pth"
    f.unlink()
    with pytest.raises(HeadFileError) as ei:
        head("aesthetic-v1-b32", d)
    assert str(f) in str(ei.value) and "not found" in str(ei.value)


def test_safety_settings():
    s = H.safety_settings()
    assert set(s) == {"nsfw", "special"}
    assert s["nsfw"]["action"] == "obfuscate"
    c = s["nsfw"]["concepts"]
    assert len(c) == 17 and c["18+"] == pytest.approx(0.21) and c["sex"] == pytest.approx(0.206)
    assert all(isinstance(k, str) and 0.1 < v < 0.3 for g in s.values() for k, v in g["concepts"].items())
    assert s["special"]["concepts"]["baby"] == pytest.approx(0.22)


def test_safetensors_mlp(tmp_path):
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    dims = [6, 5, 4, 3, 2, 1]
    # keys whose string order differs from numeric order (2 < 10)
    names = ["net.0", "net.2", "net.4", "net.10", "net.12"]
    sd = {}
    for n, a, b in zip(names, dims, dims[1:]):
        sd[f"{n}.weight"] = rng.standard_normal((b, a)).astype(np.float32)
        sd[f"{n}.bias"] = rng.standard_normal(b).astype(np.float32)
    p = tmp_path / "mlp.safetensors"
    save_file(sd, str(p))
    x = rng.standard_normal((7, 6)).astype(np.float32)

    def ref(relu):
        h = x
        for j, n in enumerate(names):
            h = h @ sd[f"{n}.weight"].T + sd[f"{n}.bias"]
            if relu and j < len(names) - 1:
                h = np.maximum(h, 0)
        return h[:, 0]

    np.testing.assert_allclose(H.load_safetensors_mlp(p)(x), ref(False), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(H.load_safetensors_mlp(p, relu=True)(x), ref(True), rtol=1e-5, atol=1e-5)
    s = H.load_safetensors_mlp(p, relu=True, sigmoid=True)(x)
    np.testing.assert_allclose(s, 1 / (1 + np.exp(-ref(True))), rtol=1e-5, atol=1e-6)
    with pytest.raises(ModelMismatchError):
        H.load_safetensors_mlp(p)(x[:, :5])
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(p.read_bytes()[:40])
    with pytest.raises(HeadFileError, match=re.escape(str(bad))):
        H.load_safetensors_mlp(bad)


def test_no_unsafe_loading_and_no_tensorflow():
    src = {p: p.read_text() for p in (REPO / "workbench").rglob("*.py")}
    for p, text in src.items():
        assert not re.search(r"weights_only\s*=\s*False", text), p
        assert not re.search(r"^\s*(import|from)\s+(tensorflow|keras)\b", text, re.M), p
        assert "pickle.load" not in text, p
        assert not re.search(r"allow_pickle\s*=\s*True", text), p
    heads_src = "".join(src[REPO / "workbench" / "models" / f] for f in ("heads.py", "mlpheads.py"))
    for call in re.findall(r"torch\.load\([^)]*\)", heads_src):
        assert "weights_only=True" in call


def test_import_does_not_load_torch():
    code = "import sys, workbench.models.heads; print('torch' in sys.modules, 'tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == ["False", "False"]


@needs_heads
def test_load_head_contract_names_and_files(tmp_path):
    import workbench

    x = unit_rows(7, 768, 3)
    for name in ("nsfw-l14", "aesthetic-v2-l14", "q16-l14"):
        h = workbench.load_head(name)
        assert callable(h) and h(x).shape == (7,) and np.allclose(h(x), head(name)(x))
    # the shipped files, by path
    zip_head = workbench.load_head(HEADS_DIR / "laion_nsfw_detector" / "clip_autokeras_binary_nsfw.zip")
    np.testing.assert_allclose(zip_head(x), head("nsfw-l14")(x), atol=1e-6)
    pth = workbench.load_head(HEADS_DIR / "improved_aesthetic_predictor" / "sac+logos+ava1-l14-linearMSE.pth")
    np.testing.assert_allclose(pth(x), head("aesthetic-v2-l14")(x), rtol=1e-5)
    q = workbench.load_head(HEADS_DIR / "q16" / "ViT-L-14" / "prompts.npy")
    np.testing.assert_allclose(q(x), head("q16-l14")(x), atol=1e-5)
    # safetensors with metadata: ReLU between layers and a sigmoid output
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    w0, w1 = rng.standard_normal((8, 768)).astype(np.float32), rng.standard_normal((1, 8)).astype(np.float32)
    save_file({"0.weight": w0, "0.bias": np.zeros(8, np.float32), "1.weight": w1, "1.bias": np.ones(1, np.float32)},
              str(tmp_path / "mlp.safetensors"), metadata={"activation": "relu", "output": "sigmoid"})
    m = workbench.load_head(tmp_path / "mlp.safetensors")
    ref = 1 / (1 + np.exp(-(np.maximum(x @ w0.T, 0) @ w1.T + 1)[:, 0]))
    np.testing.assert_allclose(m(x), ref, rtol=1e-4, atol=1e-6)
    assert m.kind == "probability"
    with pytest.raises(ModelMismatchError, match="expects 768-d"):
        m(unit_rows(2, 512, 0))
    (tmp_path / "h.onnx").write_bytes(b"x")
    with pytest.raises(HeadFileError, match="unknown head format"):
        workbench.load_head(tmp_path / "h.onnx")
    with pytest.raises(HeadFileError, match="not a known head name"):
        workbench.load_head("nsfw-l15")


@needs_heads
def test_aesthetic_v2_rises_with_the_independent_v1_rating():
    """No human-rated CLIP embeddings ship here, so the embeddings are rated by LAION's v1 predictor
    (trained separately, on SAC ratings): v2's mean score rises across v1's rating quintiles, and
    along v1's direction. A transposed or misordered layer would break both."""
    x = unit_rows(5000, 768, 11)
    v1, v2 = head("aesthetic-v1-l14")(x), head("aesthetic-v2-l14")(x)
    edges = np.quantile(v1, [0.2, 0.4, 0.6, 0.8])
    means = [v2[np.digitize(v1, edges) == q].mean() for q in range(5)]
    assert all(b > a for a, b in zip(means, means[1:])), means
    w = H._linear_chain(H._torch_state_dict(HEADS_DIR / "laion_aesthetic_v1" / "sa_0_4_vit_l_14_linear.pth"), None)[0][0][:, 0]
    steps = [head("aesthetic-v2-l14")((x[:200] + t * w / np.linalg.norm(w)) /
                                      np.linalg.norm(x[:200] + t * w / np.linalg.norm(w), axis=1, keepdims=True)).mean()
             for t in (0.0, 0.3, 0.6, 1.0)]
    assert all(b > a for a, b in zip(steps, steps[1:])), steps
