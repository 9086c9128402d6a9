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
raises :class:`~workbench.heads.ModelMismatchError` when embeddings would not be comparable.

torch and open_clip are imported only when an encoder is loaded: importing this module is cheap.
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import socket
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import urlparse

import numpy as np

from workbench.errors import WorkbenchError
from workbench.heads import ModelMismatchError

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt", ".npz")
_OFFLINE_VARS = ("WORKBENCH_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
_PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
_HF_WEIGHTS_NAME = "open_clip_pytorch_model.bin"
_HF_SAFE_WEIGHTS_NAME = "open_clip_model.safetensors"
_REGISTERED_CONFIGS: set[str] = set()


class EncoderError(WorkbenchError):
    """A model could not be built or its weights could not be obtained."""


class CheckpointError(EncoderError):
    """A checkpoint file is missing, truncated, not a checkpoint, or unsafe to load."""


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


# ---------------------------------------------------------------- model specs and names

def normalise_model_name(name: str) -> str:
    """Compare-friendly model name: ``ViT-B/32``, ``vit-b-32`` and ``ViT-B-32-quickgelu`` agree."""
    n = str(name).strip().replace("/", "-").casefold()
    if n.endswith("-quickgelu"):
        n = n[: -len("-quickgelu")]
    return n


def _looks_like_path(s: str) -> bool:
    return (s.startswith(("/", "./", "../", "~")) or os.sep in s and Path(s).suffix != ""
            or s.lower().endswith(CHECKPOINT_SUFFIXES + (".json",)) or Path(s).expanduser().exists())


def parse_model_spec(spec: str) -> tuple[str, str | None]:
    """``"ViT-B-32/laion2b_s34b_b79k"`` or ``"ViT-B-32:laion2b_s34b_b79k"`` -> ``("ViT-B-32", tag)``.

    A path (to a config JSON or a checkpoint) stays whole; ``"config.json:ckpt.pt"`` splits into
    the two paths; ``"ViT-B/32"`` is a model name, not a name and a tag; ``hf-hub:`` and
    ``local-dir:`` specs are passed through whole.
    """
    spec = str(spec).strip()
    if not spec:
        raise WorkbenchError("empty model spec")
    if spec.startswith(("hf-hub:", "local-dir:")) or Path(spec).expanduser().exists():
        return spec, None
    if ":" in spec:
        name, tag = (s.strip() for s in spec.split(":", 1))
        if not name or not tag:
            raise WorkbenchError(f"bad model spec {spec!r}: expected NAME:TAG")
        return (name if _looks_like_path(name) else name.replace("/", "-")), tag
    if _looks_like_path(spec):
        return spec, None
    if "/" in spec:
        head, tail = spec.rsplit("/", 1)
        if re.fullmatch(r"\d+(@\d+px)?", tail):  # "ViT-B/32", "ViT-L/14@336px": OpenAI names
            return spec.replace("/", "-"), None
        if not head or not tail:
            raise WorkbenchError(f"bad model spec {spec!r}: expected NAME/TAG")
        return head.replace("/", "-"), tail
    return spec, None


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


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


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


def _load_weights(model, path: Path) -> None:
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


def _offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on") for v in _OFFLINE_VARS)


def _cached_hub_file(hf_hub: str) -> str | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    model_id, filename = os.path.split(hf_hub)
    filename = filename or _HF_WEIGHTS_NAME
    names = [filename]
    if filename == _HF_WEIGHTS_NAME:
        names.insert(0, _HF_SAFE_WEIGHTS_NAME)
    elif filename.endswith((".bin", ".pth")):
        names.insert(0, filename[:-4] + ".safetensors")
    for n in names:
        try:
            p = try_to_load_from_cache(model_id, n)
        except Exception:
            p = None
        if isinstance(p, str) and os.path.isfile(p):
            return p
    return None


def _reachable(url: str, timeout: float = 5.0) -> str | None:
    """None when a TCP connection to the url's host opens (or a proxy is set), else the reason."""
    if any(os.environ.get(v) for v in _PROXY_VARS):
        return None
    u = urlparse(url)
    host, port = u.hostname, u.port or (80 if u.scheme == "http" else 443)
    if not host:
        return None
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return f"{host} is unreachable: {exc}"


def _fetch_tag_weights(name: str, tag: str, cfg: dict) -> str:
    """The local path of a pretrained tag's weights, from the cache or downloaded."""
    from open_clip.pretrained import download_pretrained

    if cfg.get("file"):
        return cfg["file"]
    hub, url = cfg.get("hf_hub", ""), cfg.get("url", "")
    if hub:
        cached = _cached_hub_file(hub)
        if cached:
            return cached
    elif url:
        cached = os.path.join(os.path.expanduser("~/.cache/clip"), os.path.basename(url))
        if os.path.isfile(cached) and _offline():
            return cached
    what = f"weights for {name}/{tag} could not be fetched"
    hint = f"; download them where there is internet, or pass a local checkpoint: load_encoder({name!r}, 'path/to/ckpt')"
    if _offline():
        raise EncoderError(f"{what}: they are not in the local cache and offline mode is set{hint}")
    why = _reachable(_hub_endpoint() if hub else url)
    if why:
        raise EncoderError(f"{what}: {why}{hint}")
    try:
        path = download_pretrained(cfg)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EncoderError(f"{what} ({first}){hint}") from None
    if not path:
        raise EncoderError(f"{what}: open_clip has no download location for this tag")
    return path


def _hub_endpoint() -> str:
    try:
        from huggingface_hub import constants
        return constants.ENDPOINT
    except Exception:
        return "https://huggingface.co"


def _check_hub_reachable(name: str) -> None:
    """An ``hf-hub:`` model whose config is not cached needs the hub: fail fast when it is out of reach."""
    repo = name[len("hf-hub:"):].strip("/")
    try:
        from huggingface_hub import try_to_load_from_cache
        if isinstance(try_to_load_from_cache(repo, "open_clip_config.json"), str):
            return
    except Exception:
        pass
    why = "offline mode is set" if _offline() else _reachable(_hub_endpoint())
    if why:
        raise EncoderError(f"{name} could not be fetched: it is not in the local cache and {why}")


def _read_config(path: Path) -> dict:
    import json

    if not path.is_file():
        raise EncoderError("model config not found" if not path.exists() else "model config is not a file", path)
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EncoderError(f"model config is not valid JSON ({exc})", path) from None
    if isinstance(cfg, dict) and "model_cfg" in cfg and "embed_dim" not in cfg:
        raise EncoderError("this is an open_clip_config.json (a hub folder's config): pass its "
                           "'model_cfg' object as its own JSON file", path)
    missing = [k for k in ("embed_dim", "vision_cfg", "text_cfg") if not isinstance(cfg, dict) or k not in cfg]
    if missing:
        raise EncoderError(f"not an open_clip model config: missing {', '.join(missing)}", path)
    return cfg


def _register_config(path: Path, cfg: dict) -> str:
    """Make the config known to open_clip under the file's stem; refuse to shadow a built-in."""
    import open_clip

    name = path.stem
    known = open_clip.get_model_config(name)
    if known is not None and known == cfg:
        return name
    if known is not None and str(path.resolve()) not in _REGISTERED_CONFIGS and name in _builtin_models():
        raise EncoderError(f"the config's name {name!r} is a built-in open_clip model with a different "
                           "architecture: rename the file", path)
    open_clip.add_model_config(path)
    _REGISTERED_CONFIGS.add(str(path.resolve()))
    if open_clip.get_model_config(name) != cfg:
        raise EncoderError("open_clip did not accept this model config", path)
    return name


class _DropRandomInitNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("No pretrained weights loaded")


@contextmanager
def _open_clip_logging(weights_follow: bool):
    """open_clip logs through the root logger: keep it from configuring logging (logging.warning
    calls basicConfig on an unconfigured root) and, when we load the weights ourselves right after,
    drop its "initialized randomly" notice."""
    root = logging.getLogger()
    guard = logging.NullHandler() if not root.handlers else None
    quiet = _DropRandomInitNotice() if weights_follow else None
    if guard:
        root.addHandler(guard)
    if quiet:
        root.addFilter(quiet)
    try:
        yield
    finally:
        if guard:
            root.removeHandler(guard)
        if quiet:
            root.removeFilter(quiet)


def _builtin_models() -> set[str]:
    import open_clip

    base = Path(open_clip.__file__).parent / "model_configs"
    return {p.stem for p in base.glob("*.json")}


def _is_checkpoint_path(pretrained) -> bool:
    if isinstance(pretrained, Path):
        return True
    return _looks_like_path(str(pretrained))


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
        _load_weights(net, checkpoint)
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


# ---------------------------------------------------------------- identity checks

def _describe(ident: dict) -> str:
    s = str(ident.get("name") or "an unnamed model")
    if ident.get("pretrained"):
        s += f"/{ident['pretrained']}"
    if ident.get("dim"):
        s += f" ({ident['dim']}-d)"
    return s


def _tag(ident: dict) -> str | None:
    p = ident.get("pretrained")
    if not isinstance(p, str) or not p.strip() or _looks_like_path(p):
        return None
    return p.strip().lower().replace("-", "_")


def check_identity(encoder_identity: dict, collection_identity: dict | None, dim: int | None = None,
                   where=None) -> None:
    """Raise ModelMismatchError when an encoder's embeddings cannot be compared with a collection's.

    ``dim`` is the collection's embedding width when known (from its shards). Checked: the widths;
    the model names when both are known (``ViT-B/32`` == ``ViT-B-32``); the checkpoint sha256s when
    both are known; the pretrained tags when both are tags (and no equal sha256 says otherwise).
    An unknown collection identity (None) only has its width checked.
    """
    enc = encoder_identity or {}
    coll = collection_identity if isinstance(collection_identity, dict) else {}
    enc_dim = enc.get("dim")
    for other in (dim, coll.get("dim")):
        if enc_dim is not None and other is not None and int(other) != int(enc_dim):
            raise ModelMismatchError(f"model mismatch: the encoder {_describe(enc)} makes {enc_dim}-d embeddings, "
                                     f"the collection's are {int(other)}-d", where)
    if not coll:
        return
    a, b = enc.get("name"), coll.get("name")
    if isinstance(a, str) and isinstance(b, str) and a.strip() and b.strip() \
            and b.strip().lower() not in ("unknown", "none") \
            and normalise_model_name(a) != normalise_model_name(b):
        raise ModelMismatchError(f"model mismatch: the encoder is {_describe(enc)}, "
                                 f"the collection's embeddings were made with {_describe(coll)}", where)
    sa, sb = enc.get("checkpoint_sha256"), coll.get("checkpoint_sha256")
    if sa and sb:
        if str(sa).lower() != str(sb).lower():
            raise ModelMismatchError(f"model mismatch: the encoder's checkpoint (sha256 {str(sa)[:12]}…) is not the "
                                     f"one the collection was embedded with (sha256 {str(sb)[:12]}…)", where)
        return
    ta, tb = _tag(enc), _tag(coll)
    if ta and tb and ta != tb:
        raise ModelMismatchError(f"model mismatch: the encoder has the {enc.get('pretrained')!r} weights, the "
                                 f"collection was embedded with {coll.get('pretrained')!r}", where)
