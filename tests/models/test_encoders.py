"""workbench.models.encoders with real open_clip code: a tiny random CLIP, saved and loaded back."""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import IMAGES, REPO, image_files
from workbench.models.encoders import (CheckpointError, EncoderError, check_identity, load_encoder,
                                normalise_model_name, parse_model_spec)
from workbench.errors import WorkbenchError
from workbench.models.heads import ModelMismatchError

torch = pytest.importorskip("torch")
open_clip = pytest.importorskip("open_clip")
from PIL import Image  # noqa: E402

TINY = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
CAPTIONS = ["a photo of a cat", "a black cat sleeping on a chair", "boats on a lake", "",
            "a very long caption " * 20]
RCLIP = IMAGES / "rclip"
NOT_AN_IMAGE = RCLIP / "not-an-image.txt"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A random 32-d CLIP built by open_clip itself, its reference outputs and its checkpoints."""
    d = tmp_path_factory.mktemp("tiny")
    cfg_path = d / "wb-tiny-clip.json"
    cfg_path.write_text(json.dumps(TINY))
    open_clip.add_model_config(cfg_path)
    torch.manual_seed(1234)
    model, _, preprocess = open_clip.create_model_and_transforms("wb-tiny-clip")
    model.eval()
    tokenizer = open_clip.get_tokenizer("wb-tiny-clip")
    assert tokenizer.context_length == 16
    sd = model.state_dict()
    torch.save(sd, d / "tiny.pt")
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in sd.items()}, str(d / "tiny.safetensors"))
    photos = image_files()
    with torch.no_grad():
        ref_text = model.encode_text(tokenizer(CAPTIONS), normalize=True).numpy()
        pixels = torch.stack([preprocess(Image.open(p).convert("RGB")) for p in photos])
        ref_images = model.encode_image(pixels, normalize=True).numpy()
    enc = load_encoder(cfg_path, d / "tiny.pt", device="cpu")
    return SimpleNamespace(dir=d, cfg=cfg_path, sd=sd, photos=photos, ref_text=ref_text,
                           ref_images=ref_images, enc=enc)


def unit_rows(x: np.ndarray) -> bool:
    return bool(np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5))


# ---------------------------------------------------------------- loading local checkpoints

@pytest.mark.parametrize("ckpt", ["tiny.pt", "tiny.safetensors"])
def test_checkpoint_reproduces_the_model(tiny, ckpt):
    path = tiny.dir / ckpt
    enc = tiny.enc if ckpt == "tiny.pt" else load_encoder(tiny.cfg, path, device="cpu")
    assert (enc.name, enc.dim, enc.device) == ("wb-tiny-clip", 32, "cpu")
    assert enc.pretrained == str(path)
    assert enc.identity == {"name": "wb-tiny-clip", "pretrained": str(path),
                            "checkpoint_sha256": sha256(path), "dim": 32}
    text = enc.encode_text(CAPTIONS)
    assert text.dtype == np.float32 and text.shape == (len(CAPTIONS), 32)
    np.testing.assert_allclose(text, tiny.ref_text, atol=1e-5)
    assert unit_rows(text)
    images = enc.encode_images(tiny.photos)
    assert images.dtype == np.float32 and images.shape == (len(tiny.photos), 32)
    np.testing.assert_allclose(images, tiny.ref_images, atol=1e-5)
    assert unit_rows(images)


def test_batching_and_empty_inputs(tiny):
    enc = tiny.enc
    np.testing.assert_allclose(enc.encode_text(CAPTIONS, batch_size=2), tiny.ref_text, atol=1e-5)
    np.testing.assert_allclose(enc.encode_images(iter(tiny.photos), batch_size=3), tiny.ref_images, atol=1e-5)
    np.testing.assert_allclose(enc.encode_image_files(tiny.photos), tiny.ref_images, atol=1e-5)
    assert enc.encode_text([]).shape == (0, 32)
    assert enc.encode_images([]).shape == (0, 32)
    with pytest.raises(WorkbenchError, match="row 1"):
        enc.encode_text(["fine", 3])


def test_images_as_bytes_pil_and_file_objects(tiny):
    p = tiny.photos[:3]
    with open(p[2], "rb") as f:
        mixed = [p[0].read_bytes(), Image.open(p[1]), f]
        out = tiny.enc.encode_images(mixed)
    np.testing.assert_allclose(out, tiny.ref_images[:3], atol=1e-5)
    np.testing.assert_allclose(tiny.enc.encode_images(str(p[0])), tiny.ref_images[:1], atol=1e-5)


def test_every_real_image_format_decodes(tiny):
    files = sorted(f for f in RCLIP.iterdir() if f.suffix.lower() not in (".txt", "") and f.name != "LICENSE")
    assert {f.suffix.lower() for f in files} >= {".jpg", ".png", ".gif", ".webp", ".tiff", ".bmp", ".pbm"}
    out = tiny.enc.encode_image_files(files)
    assert out.shape == (len(files), 32) and unit_rows(out)


def test_non_image_file_names_file_and_row(tiny):
    with pytest.raises(WorkbenchError) as e:
        tiny.enc.encode_images([tiny.photos[0], NOT_AN_IMAGE, tiny.photos[1]])
    assert e.value.path == str(NOT_AN_IMAGE) and e.value.row == 1
    assert "not-an-image.txt: row 1: not an image" in str(e.value)
    with pytest.raises(WorkbenchError, match="row 0: not an image"):
        tiny.enc.encode_images([b"definitely not an image"])
    with pytest.raises(WorkbenchError, match="image file not found"):
        tiny.enc.encode_images([tiny.dir / "nope.jpg"])
    truncated = tiny.dir / "half.jpg"
    truncated.write_bytes(tiny.photos[0].read_bytes()[:800])
    with pytest.raises(WorkbenchError, match="half.jpg: row 0: cannot decode"):
        tiny.enc.encode_images([truncated])


@pytest.mark.parametrize("wrap", ["state_dict+module", "model", "state_dict+extras"])
def test_common_checkpoint_wrappers(tiny, wrap):
    sd = tiny.sd
    if wrap == "state_dict+module":
        obj = {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in sd.items()}}
    elif wrap == "model":
        obj = {"model": dict(sd)}
    else:  # an open_clip training checkpoint: name, epoch, optimizer state beside the weights
        obj = {"epoch": 1, "name": "run", "state_dict": dict(sd),
               "optimizer": {"state": {0: {"step": torch.tensor(1.0)}}, "param_groups": [{"lr": 1e-3, "params": [0]}]}}
    path = tiny.dir / f"wrapped-{wrap}.pth"
    torch.save(obj, path)
    enc = load_encoder(tiny.cfg, path, device="cpu")
    assert enc.identity["checkpoint_sha256"] == sha256(path)
    np.testing.assert_allclose(enc.encode_text(CAPTIONS[:2]), tiny.ref_text[:2], atol=1e-5)


def test_model_spec_string_with_config_and_checkpoint(tiny):
    enc = load_encoder(f"{tiny.cfg}:{tiny.dir / 'tiny.safetensors'}", device="cpu")
    assert enc.identity["checkpoint_sha256"] == sha256(tiny.dir / "tiny.safetensors")


def test_random_weights_without_checkpoint(tiny):
    enc = load_encoder(tiny.cfg, device="auto")
    assert enc.device == ("cuda" if torch.cuda.is_available() else "cpu")
    assert enc.identity == {"name": "wb-tiny-clip", "pretrained": None, "checkpoint_sha256": None, "dim": 32}
    assert unit_rows(enc.encode_text(["x"]))


# ---------------------------------------------------------------- refusing bad checkpoints

class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


@pytest.mark.parametrize("form", ["torch.save", "raw-pickle"])
def test_pickle_that_runs_code_is_refused(tiny, tmp_path, form):
    marker = tmp_path / "marker"
    path = tmp_path / ("evil.pt" if form == "torch.save" else "evil.bin")
    payload = {"state_dict": {**tiny.sd, "boom": _Evil(marker)}}
    if form == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(CheckpointError) as e:
        load_encoder(tiny.cfg, path, device="cpu")
    assert str(path) in str(e.value) and "refused" in str(e.value) and "exec" in str(e.value)
    assert not marker.exists()


@pytest.mark.parametrize("ckpt", ["tiny.pt", "tiny.safetensors"])
def test_truncated_checkpoint(tiny, tmp_path, ckpt):
    data = (tiny.dir / ckpt).read_bytes()
    path = tmp_path / f"cut-{ckpt}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WorkbenchError) as e:
        load_encoder(tiny.cfg, path, device="cpu")
    assert str(e.value).startswith(f"{path}: ")


def test_files_that_are_not_checkpoints(tiny, tmp_path):
    jpg = tmp_path / "photo.pt"
    jpg.write_bytes(tiny.photos[0].read_bytes())
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    tensor = tmp_path / "tensor.pt"
    torch.save(torch.ones(3), tensor)
    for path, why in ((jpg, "not a checkpoint"), (empty, "safetensors"), (tensor, "not a state dict"),
                      (tmp_path / "missing.pt", "checkpoint not found")):
        with pytest.raises(CheckpointError, match=why) as e:
            load_encoder(tiny.cfg, path, device="cpu")
        assert e.value.path == str(path)


def test_missing_unexpected_and_misshapen_keys(tiny, tmp_path):
    sd = dict(tiny.sd)
    sd.pop("text_projection")
    sd["visual.extra.weight"] = torch.zeros(2)
    path = tmp_path / "partial.safetensors"
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    with pytest.raises(ModelMismatchError) as e:
        load_encoder(tiny.cfg, path, device="cpu")
    msg = str(e.value)
    assert msg.startswith(str(path)) and "1 missing: text_projection" in msg and "1 unexpected: visual.extra.weight" in msg

    wide = dict(TINY, embed_dim=48)
    wide_cfg = tmp_path / "wb-tiny-wide.json"
    wide_cfg.write_text(json.dumps(wide))
    with pytest.raises(ModelMismatchError, match="wrong shape: .*text_projection"):
        load_encoder(wide_cfg, tiny.dir / "tiny.pt", device="cpu")


# ---------------------------------------------------------------- model names, tags, configs

def test_unknown_tag_is_a_clear_error():
    t = time.monotonic()
    with pytest.raises(EncoderError) as e:
        load_encoder("ViT-B-32", "no_such_tag_xyz", device="cpu")
    msg = str(e.value)
    assert "ViT-B-32" in msg and "no_such_tag_xyz" in msg and "could not be fetched" in msg
    assert "laion2b_s34b_b79k" in msg  # the known tags are listed
    assert time.monotonic() - t < 10


def test_known_tag_offline_fails_fast(monkeypatch):
    from huggingface_hub import try_to_load_from_cache
    from open_clip.pretrained import get_pretrained_cfg
    repo = get_pretrained_cfg("ViT-B-32", "laion2b_s34b_b79k")["hf_hub"].rstrip("/")
    if any(isinstance(try_to_load_from_cache(repo, f), str)
           for f in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")):
        pytest.skip("these weights are cached here: loading them would not test the offline error")
    monkeypatch.setenv("WORKBENCH_OFFLINE", "1")
    t = time.monotonic()
    with pytest.raises(EncoderError, match=r"weights for ViT-B-32/laion2b_s34b_b79k could not be fetched.*offline"):
        load_encoder("ViT-B-32/laion2b_s34b_b79k", device="cpu")
    if not isinstance(try_to_load_from_cache(repo, "open_clip_config.json"), str):
        with pytest.raises(EncoderError, match=f"hf-hub:{repo} could not be fetched.*offline"):
            load_encoder(f"hf-hub:{repo}", device="cpu")
    assert time.monotonic() - t < 10


def test_unknown_model_and_bad_configs(tiny, tmp_path):
    with pytest.raises(EncoderError, match="unknown open_clip model 'ViT-Q-99'"):
        load_encoder("ViT-Q-99", device="cpu")
    with pytest.raises(EncoderError, match="did you mean 'ViT-B-32'"):
        load_encoder("vit-b-32", device="cpu")
    with pytest.raises(EncoderError, match="model config not found"):
        load_encoder(tmp_path / "absent.json", device="cpu")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"embed_dim": 8, "vision_cfg": {}}))
    with pytest.raises(EncoderError, match="missing text_cfg"):
        load_encoder(bad, device="cpu")
    shadow = tmp_path / "ViT-B-32.json"
    shadow.write_text(json.dumps(TINY))
    with pytest.raises(EncoderError, match="built-in open_clip model"):
        load_encoder(shadow, device="cpu")
    assert open_clip.get_model_config("ViT-B-32")["embed_dim"] == 512  # the registry is untouched
    with pytest.raises(EncoderError, match="this is a checkpoint, not a model"):
        load_encoder(tiny.dir / "tiny.pt", device="cpu")
    with pytest.raises(EncoderError, match="takes a checkpoint path, not the tag"):
        load_encoder(tiny.cfg, "laion2b_s34b_b79k", device="cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_asked_for_without_cuda(tiny):
    with pytest.raises(EncoderError, match="CUDA is not available"):
        load_encoder(tiny.cfg, device="cuda")


@pytest.mark.parametrize("spec, expected", [
    ("ViT-B-32/laion2b_s34b_b79k", ("ViT-B-32", "laion2b_s34b_b79k")),
    ("ViT-B-32:laion2b_s34b_b79k", ("ViT-B-32", "laion2b_s34b_b79k")),
    ("ViT-B/32", ("ViT-B-32", None)),
    ("ViT-L/14@336px", ("ViT-L-14@336px", None)),
    ("ViT-B/32/openai", ("ViT-B-32", "openai")),
    ("ViT-B/32:openai", ("ViT-B-32", "openai")),
    ("ViT-B-32", ("ViT-B-32", None)),
    ("ViT-B-32:/models/b32.safetensors", ("ViT-B-32", "/models/b32.safetensors")),
    ("/models/custom.json", ("/models/custom.json", None)),
    ("configs/custom.json", ("configs/custom.json", None)),
    ("hf-hub:timm/ViT-B-16-SigLIP", ("hf-hub:timm/ViT-B-16-SigLIP", None)),
])
def test_parse_model_spec(spec, expected):
    assert parse_model_spec(spec) == expected


def test_parse_model_spec_keeps_existing_paths_whole(tiny):
    assert parse_model_spec(str(tiny.cfg)) == (str(tiny.cfg), None)
    with pytest.raises(WorkbenchError):
        parse_model_spec("  ")


# ---------------------------------------------------------------- identity checks

B32 = {"name": "ViT-B-32", "pretrained": "laion2b_s34b_b79k", "checkpoint_sha256": "ab" * 32, "dim": 512}


def test_check_identity_accepts_compatible():
    check_identity(B32, None)
    check_identity(B32, None, dim=512)
    check_identity(B32, {})
    check_identity(B32, {"name": "ViT-B/32", "source": "datacomp"}, dim=512)
    check_identity(B32, {"name": "vit-b-32-quickgelu", "pretrained": "laion2b-s34b-b79k"})
    check_identity(B32, dict(B32, pretrained="/somewhere/else/same.bin"))  # same sha256
    check_identity(B32, {"name": "unknown"})
    assert normalise_model_name("ViT-B/32") == normalise_model_name("ViT-B-32")


@pytest.mark.parametrize("other, dim, what", [
    (None, 768, "768-d"),
    ({"name": "ViT-B-32", "dim": 768}, None, "768-d"),
    ({"name": "ViT-L-14"}, None, "ViT-L-14"),
    ({"name": "demo-synthetic", "synthetic": True, "dim": 512}, None, "demo-synthetic"),
    ({"name": "ViT-B-32", "checkpoint_sha256": "cd" * 32}, None, "sha256"),
    ({"name": "ViT-B-32", "pretrained": "openai"}, None, "openai"),
])
def test_check_identity_mismatches(other, dim, what, tmp_path):
    with pytest.raises(ModelMismatchError, match=what) as e:
        check_identity(B32, other, dim=dim, where=tmp_path)
    assert str(e.value).startswith(f"{tmp_path}: model mismatch")


def test_identity_of_loaded_encoders(tiny, tmp_path):
    again = load_encoder(tiny.cfg, tiny.dir / "tiny.safetensors", device="cpu")
    check_identity(tiny.enc.identity, {"name": "wb-tiny-clip", "dim": 32})
    with pytest.raises(ModelMismatchError, match="sha256"):  # same tensors, different files
        check_identity(tiny.enc.identity, again.identity)
    with pytest.raises(ModelMismatchError, match="32-d"):
        check_identity(tiny.enc.identity, None, dim=512)


# ---------------------------------------------------------------- import hygiene

def test_module_imports_without_torch():
    code = ("import sys; import workbench.models.encoders as e; "
            "assert 'torch' not in sys.modules and 'open_clip' not in sys.modules, sorted(sys.modules); "
            "print(e.parse_model_spec('ViT-B/32:openai'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "('ViT-B-32', 'openai')"
