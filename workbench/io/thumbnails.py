"""Thumbnails for the gallery: local files and webdataset tars always, remote URLs only when allowed.

Remote fetching is off unless the curator opts in (``allow_remote=True``): a gallery must not
make a notebook contact thousands of web hosts by surprise. Every failure (no image, an
undecodable file, a timeout) gives ``None`` and the reason, never an exception: the gallery then
shows the caption and scores alone.
"""
from __future__ import annotations

import io
import urllib.request
from dataclasses import dataclass

from workbench.errors import WorkbenchError
from workbench.io.images import image_bytes

MAX_REMOTE_BYTES = 20 << 20
USER_AGENT = "laion-workbench-gallery/0.1 (curation; +https://github.com/)"


@dataclass
class Thumbnail:
    row: int
    jpeg: bytes | None
    source: str  # "local", "tar", "remote" or "" when none
    problem: str = ""


def fetch_remote(url: str, timeout: float = 5.0) -> bytes:
    if not url.lower().startswith(("http://", "https://")):
        raise WorkbenchError(f"not an http(s) URL: {url!r}")
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    with urllib.request.urlopen(req, timeout=timeout) as r:  # noqa: S310 - scheme checked above
        data = r.read(MAX_REMOTE_BYTES + 1)
    if len(data) > MAX_REMOTE_BYTES:
        raise WorkbenchError(f"image larger than 20 MB: {url}")
    return data


def make_thumbnail(data: bytes, size: int = 160) -> bytes:
    """A JPEG of at most size x size pixels (first frame of animations; alpha flattened on white)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        im.seek(0)
        im.draft("RGB", (size * 2, size * 2))
        im = im.convert("RGBA") if im.mode in ("P", "LA", "RGBA", "PA") else im.convert("RGB")
        if im.mode == "RGBA":
            bg = Image.new("RGB", im.size, "white")
            bg.paste(im, mask=im.getchannel("A"))
            im = bg
        im.thumbnail((size, size))
        out = io.BytesIO()
        im.save(out, "JPEG", quality=80)
        return out.getvalue()


def thumbnail(collection, row: int, url: str | None = None, size: int = 160, allow_remote: bool = False,
              timeout: float = 5.0) -> Thumbnail:
    try:
        data = image_bytes(collection, row)
        source = "tar" if collection.images == "webdataset" else "local"
    except Exception as exc:  # noqa: BLE001 - a broken tar must not break the gallery
        data, source = None, ""
        problem = str(exc)
    else:
        problem = ""
    if data is None and allow_remote and url:
        try:
            data, source = fetch_remote(url, timeout), "remote"
        except Exception as exc:  # noqa: BLE001
            return Thumbnail(row, None, "", f"remote fetch failed ({type(exc).__name__}: {exc})")
    if data is None:
        return Thumbnail(row, None, "", problem or ("no local image" + ("" if allow_remote else "; remote images are off")))
    try:
        return Thumbnail(row, make_thumbnail(data, size), source)
    except Exception as exc:  # noqa: BLE001 - not an image, truncated, ...
        return Thumbnail(row, None, source, f"not a readable image ({type(exc).__name__})")
