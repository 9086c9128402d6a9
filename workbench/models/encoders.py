"""CLIP encoders (open_clip) that turn captions and images into L2-normalised embeddings.

``load_encoder(model, pretrained=None, device="auto")`` accepts these model forms:

1. **An open_clip model name and a pretrained tag** (needs the weights online or in the Hugging
   Face / open_clip cache): ``load_encoder("ViT-B-32", "laion2b_s34b_b79k")``, or one spec string
   ``"ViT-B-32/laion2b_s34b_b79k"`` / ``"ViT-B-32:laion2b_s34b_b79k"``. ``"ViT-B/32"`` (OpenAI
   spelling) means ``"ViT-B-32"``. Weights that are not cached are fetched once; with
   ``HF_HUB_OFFLINE=1`` (or ``WORKBENCH_OFFLINE=1``), or when the hub cannot be reached, an
   uncached tag fails at once with a message saying so instead of retrying for a minute.
2. **An open_clip model name and a local checkpoint file**:
   ``load_encoder("ViT-B-32", "/models/b32.safetensors")``. ``.safetensors`` files are read with
   safetensors; ``.pt`` / ``.pth`` / ``.bin`` with ``torch.load(weights_only=True)``, so a pickle
   that holds anything but tensors is refused, never run. The usual wrappers are accepted
   (``{"state_dict": ...}``, ``{"model": ...}``, ``module.`` key prefixes); every weight of the
   architecture must be present. The file's sha256 is recorded in the encoder's identity.
3. **A model-config JSON file** in open_clip's format
   (``{"embed_dim": .., "vision_cfg": {..}, "text_cfg": {..}}``) for a custom architecture, with
   a checkpoint path as in 2 (or none: random weights). The model's name is the file's stem; the
   tokenizer follows ``text_cfg`` (``context_length``, ``hf_tokenizer_name``).
4. A built-in name (or config) without ``pretrained``: random weights, for tests only; its
   embeddings mean nothing (``identity["pretrained"]`` is None).

``device="auto"`` picks CUDA when available (encoding under fp16 autocast), else the CPU (fp32).
``Encoder.identity`` (``name``, ``pretrained``, ``checkpoint_sha256``, ``dim``) is what manifests
and score caches record; :func:`check_identity` compares it with a collection's model identity and
raises :class:`~workbench.errors.ModelMismatchError` when embeddings would not be comparable.

The pieces live beside this module: :mod:`workbench.models.spec` (model specs, identities),
:mod:`workbench.models.checkpoints` (safe checkpoint loading), :mod:`workbench.models.openclip`
(hub, offline mode, config files); their public names are re-exported here.

torch and open_clip are imported only when an encoder is loaded: importing this module is cheap.
"""
from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from workbench.errors import ModelMismatchError, WorkbenchError  # noqa: F401  (re-exported)
from workbench.models.checkpoints import load_weights, read_state_dict, sha256_file  # noqa: F401  (re-exported)
from workbench.models.openclip import (_cached_hub_file, _check_hub_reachable, _fetch_tag_weights,
                                       _open_clip_logging, _read_config, _register_config)
from workbench.models.spec import (CHECKPOINT_SUFFIXES, CheckpointError, EncoderError,  # noqa: F401  (re-exported)
                                   _is_checkpoint_path, check_identity, normalise_model_name, parse_model_spec)


# ---------------------------------------------------------------- the encoder object

@dataclass
class Encoder:
    """A loaded CLIP model; ``encode_*`` return float32 ``(n, dim)`` arrays of unit rows."""

    name: str
    pretrained: str | None
    dim: int
    device: str
    identity: dict
    model: Any = field(default=None, repr=False, compare=False)
    preprocess: Any = field(default=None, repr=False, compare=False)
    tokenizer: Any = field(default=None, repr=False, compare=False)

    # -- text ----------------------------------------------------------------------------------
    def encode_text(self, texts: list[str], batch_size: int = 256) -> np.ndarray:
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise WorkbenchError(f"a caption must be a string, got {type(t).__name__}", row=i)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        batch_size = max(1, int(batch_size))
        for start in range(0, len(texts), batch_size):
            tokens = self.tokenizer(texts[start:start + batch_size])
            out[start:start + len(tokens)] = self._run(self.model.encode_text, tokens)
        return out

    # -- images --------------------------------------------------------------------------------
    def encode_images(self, images: Iterable, batch_size: int = 64) -> np.ndarray:
        """``images``: PIL images, file paths, encoded bytes or binary file objects, in any mix."""
        import torch

        if isinstance(images, (str, Path, bytes, bytearray, memoryview)) or _is_pil(images):
            images = [images]
        batch_size = max(1, int(batch_size))
        parts: list[np.ndarray] = []
        batch: list = []
        for i, item in enumerate(images):
            batch.append(self._prepare(item, i))
            if len(batch) == batch_size:
                parts.append(self._run(self.model.encode_image, torch.stack(batch)))
                batch = []
        if batch:
            parts.append(self._run(self.model.encode_image, torch.stack(batch)))
        if not parts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.concatenate(parts)

    def encode_image_files(self, paths, batch_size: int = 64) -> np.ndarray:
        return self.encode_images([Path(p) for p in paths], batch_size=batch_size)

    # -- internals -----------------------------------------------------------------------------
    def _prepare(self, item, row: int):
        image = load_image(item, row)
        try:
            return self.preprocess(image)
        except Exception as exc:  # a transform failing on an odd image (e.g. 0-pixel wide)
            raise WorkbenchError(f"cannot preprocess image ({exc})", _source_name(item), row) from None

    def _run(self, fn, x, precision: str = "auto") -> np.ndarray:
        """``fn(x)`` L2-normalised, as float32 numpy. ``precision``: auto (fp16 autocast on CUDA, fp32
        on CPU), fp32, fp16 or bf16 (on a CPU both mean bfloat16 autocast, very slow without AMX)."""
        import torch
        import torch.nn.functional as F

        cuda = self.device.startswith("cuda")
        with torch.inference_mode():
            x = x.to(self.device, non_blocking=cuda)
            if cuda and precision in ("auto", "fp16", "bf16"):
                with torch.autocast("cuda", dtype=torch.bfloat16 if precision == "bf16" else torch.float16):
                    y = fn(x)
            elif not cuda and precision in ("fp16", "bf16"):
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    y = fn(x)
            else:
                y = fn(x)
            y = F.normalize(y.float(), dim=-1)
        return y.cpu().numpy().astype(np.float32, copy=False)


def _is_pil(obj) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover
        return False
    return isinstance(obj, Image.Image)


def _source_name(item) -> str | None:
    if isinstance(item, (str, Path)):
        return str(item)
    name = getattr(item, "name", None)  # an open file
    return name if isinstance(name, str) else None


def load_image(item, row: int | None = None):
    """A PIL RGB image from a PIL image, a path, encoded bytes or a binary file object."""
    from PIL import Image

    path = _source_name(item)

    def rgb(image):
        if image.mode == "P" and "transparency" in image.info:
            image = image.convert("RGBA")
        return image.convert("RGB")  # also forces the decode, so truncated files fail here

    try:
        if isinstance(item, Image.Image):
            return rgb(item)
        if isinstance(item, (bytes, bytearray, memoryview)):
            item = io.BytesIO(bytes(item))
        elif not isinstance(item, (str, Path)) and not hasattr(item, "read"):
            raise WorkbenchError(f"not an image, a path or bytes: {type(item).__name__}", row=row)
        with Image.open(item) as image:
            return rgb(image)
    except WorkbenchError:
        raise
    except FileNotFoundError:
        raise WorkbenchError("image file not found", path, row) from None
    except Exception as exc:  # UnidentifiedImageError, truncated data, decompression bombs, ...
        what = "not an image" if type(exc).__name__ == "UnidentifiedImageError" else "cannot decode image"
        why = re.sub(r"<_io\.BytesIO object at 0x[0-9a-fA-F]+>", "the data", str(exc))  # no memory addresses
        raise WorkbenchError(f"{what} ({why})", path, row) from None


# ---------------------------------------------------------------- loading

def _resolve_device(device: str) -> str:
    import torch

    device = (device or "auto").strip().lower()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise EncoderError(f"device {device!r} asked for, but CUDA is not available")
        return device
    if device == "cpu":
        return device
    raise EncoderError(f"unknown device {device!r}: use auto, cpu or cuda[:N]")



def load_encoder(model: str | Path, pretrained: str | Path | None = None, device: str = "auto") -> Encoder:
    """Build an :class:`Encoder` (see the module docstring for the accepted forms)."""
    if isinstance(pretrained, str) and not pretrained.strip():
        pretrained = None
    if isinstance(model, str) and pretrained is None:
        model, pretrained = parse_model_spec(model)
    try:
        import open_clip
        import torch
    except ImportError as exc:
        raise EncoderError(f"encoding needs torch and open_clip_torch ({exc}): pip install open_clip_torch") from None
    dev = _resolve_device(device)

    config_path = None
    if isinstance(model, Path) or str(model).lower().endswith(".json") or Path(str(model)).expanduser().is_file():
        config_path = Path(model).expanduser()
        if config_path.is_dir():
            raise EncoderError("a model folder is not supported: pass its config JSON and checkpoint", config_path)
        if config_path.suffix.lower() in CHECKPOINT_SUFFIXES:
            raise EncoderError("this is a checkpoint, not a model: name the architecture first, "
                               f"e.g. load_encoder('ViT-B-32', {str(config_path)!r})", config_path)
        cfg = _read_config(config_path)
        name = _register_config(config_path, cfg)
    else:
        name = str(model).strip()
        if name.startswith("hf-hub:"):
            _check_hub_reachable(name)
        elif not name.startswith("local-dir:"):
            name = name.replace("/", "-")
            if name not in open_clip.list_models():
                close = [m for m in open_clip.list_models() if normalise_model_name(m) == normalise_model_name(name)]
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise EncoderError(f"unknown open_clip model {name!r}{hint}; see open_clip.list_models()")

    checkpoint: Path | None = None
    tag_cfg: dict = {}
    if pretrained is not None:
        if _is_checkpoint_path(pretrained):
            checkpoint = Path(pretrained).expanduser()
            if not checkpoint.is_file():
                raise CheckpointError("checkpoint not found", checkpoint)
        elif config_path is not None:
            raise EncoderError(f"a model given by its config file takes a checkpoint path, not the tag {str(pretrained)!r}",
                               config_path)
        elif name.startswith(("hf-hub:", "local-dir:")):
            raise EncoderError(f"{name} carries its own weights: drop the pretrained tag {str(pretrained)!r}")
        else:
            from open_clip.pretrained import get_pretrained_cfg, list_pretrained_tags_by_model

            tag_cfg = get_pretrained_cfg(name, str(pretrained))
            if not tag_cfg:
                tags = list_pretrained_tags_by_model(name)
                raise EncoderError(f"unknown pretrained tag {str(pretrained)!r} for {name}; weights could not be "
                                   f"fetched. Known tags: {', '.join(tags) if tags else 'none'}")
            checkpoint = Path(_fetch_tag_weights(name, str(pretrained), tag_cfg))

    kwargs: dict = {"pretrained_text": False, "pretrained_image": False}
    if tag_cfg:
        kwargs["force_quick_gelu"] = bool(tag_cfg.get("quick_gelu", False))
        for k_cfg, k_arg in (("mean", "image_mean"), ("std", "image_std"),
                             ("interpolation", "image_interpolation"), ("resize_mode", "image_resize_mode")):
            if tag_cfg.get(k_cfg) is not None:
                kwargs[k_arg] = tag_cfg[k_cfg]
    try:
        with _open_clip_logging(weights_follow=checkpoint is not None):
            net, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=None, device="cpu", **kwargs)
            tokenizer = open_clip.get_tokenizer(name)
    except WorkbenchError:
        raise
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EncoderError(f"open_clip could not build {name} ({first})", config_path) from None

    sha = None
    if checkpoint is not None:
        load_weights(net, checkpoint)
        sha = sha256_file(checkpoint)
    elif name.startswith("hf-hub:"):  # open_clip loaded the hub's weights (weights_only): record which
        cached = _cached_hub_file(name[len("hf-hub:"):].rstrip("/") + "/")
        sha = sha256_file(cached) if cached else None
    net = net.to(dev).eval()

    cfg = None if name.startswith(("hf-hub:", "local-dir:")) else open_clip.get_model_config(name)
    enc = Encoder(name=name, pretrained=None if pretrained is None else str(pretrained), dim=0, device=dev,
                  identity={}, model=net, preprocess=preprocess, tokenizer=tokenizer)
    dim = int(cfg["embed_dim"]) if cfg and "embed_dim" in cfg else None
    if dim is None:
        with torch.inference_mode():
            dim = int(net.encode_text(tokenizer([""]).to(dev)).shape[-1])
    enc.dim = dim
    enc.identity = {"name": name, "pretrained": enc.pretrained, "checkpoint_sha256": sha, "dim": dim}
    return enc
