"""open_clip by name and pretrained tag, offline-aware, and custom model-config JSON files.

Weights of a pretrained tag come from the Hugging Face / open_clip cache when they are there, else
are downloaded once. With ``HF_HUB_OFFLINE=1`` (or ``WORKBENCH_OFFLINE=1`` /
``TRANSFORMERS_OFFLINE=1``), or when the hub cannot be reached, an uncached tag fails at once with
an :class:`~workbench.models.spec.EncoderError` saying so instead of retrying for a minute.

A model-config JSON in open_clip's format (``{"embed_dim", "vision_cfg", "text_cfg"}``) is
registered with open_clip under the file's stem; a file that would shadow a built-in model with a
different architecture is refused.

open_clip and huggingface_hub are imported only inside the functions.
"""
from __future__ import annotations

import logging
import os
import socket
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

from workbench.errors import EncoderError

_OFFLINE_VARS = ("WORKBENCH_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
_PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
_HF_WEIGHTS_NAME = "open_clip_pytorch_model.bin"
_HF_SAFE_WEIGHTS_NAME = "open_clip_model.safetensors"
_REGISTERED_CONFIGS: set[str] = set()


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
