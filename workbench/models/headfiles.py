"""The published detector-head files: where each comes from, its pinned size and sha256, and
fetching it into the heads folder on first use.

:data:`HEAD_FILES` is the registry, one row per head name (the names :func:`workbench.load_head`
accepts): the file's path inside the heads folder, its upstream address (pinned to a commit), its
size and sha256, the head's input width and the file's licence.

Where the files go, and where they come from::

    $WORKBENCH_HEADS_DIR            the heads folder (default ~/.cache/laion-workbench/heads)
    $WORKBENCH_HEADS_MIRROR=URL     fetch from a mirror instead of upstream: a folder with the heads
                                    folder's layout (URL/laion_nsfw_detector/clip_autokeras_binary_nsfw.zip,
                                    ...), as http(s)://, file:// or a plain local path
    $WORKBENCH_OFFLINE=1            never use the network: a missing file is an error that says which
                                    file to place where (a local mirror is still read)

A file is written to the heads folder only after its size and sha256 match the pin (downloads go
through pooch, with retries; a local mirror is copied); a file that differs is refused
(:class:`~workbench.errors.HeadChecksumError`) and nothing of it is kept. Q16's upstream file is a
pickled numpy array (``prompts.p``): it is checked against its own pin, read with the restricted
unpickler of :mod:`workbench.models.arraypickle` (numpy arrays only, nothing else runs) and stored
as ``prompts.npy``, which must then match the pin of the heads folder's file. A mirror serves
``prompts.npy`` itself.
"""
from __future__ import annotations

import io
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from workbench.errors import ConfigError, HeadChecksumError, HeadFetchError, first_line
from workbench.io.files import sha256_file

DEFAULT_HEADS_DIR = Path("~/.cache/laion-workbench/heads")
_NSFW = "https://raw.githubusercontent.com/LAION-AI/CLIP-based-NSFW-Detector/d6bb8fe31fd4aecbfed7dfb62df4fe5858bfc014/"
_AES_V1 = "https://raw.githubusercontent.com/LAION-AI/aesthetic-predictor/6d122adad522ab246644d9dc1c6d7a3810ee255f/"
_AES_V2 = "https://raw.githubusercontent.com/christophschuhmann/improved-aesthetic-predictor/6934dd81792f086e613a121dbce43082cb8be85e/"
_Q16 = "https://raw.githubusercontent.com/ml-research/Q16/33de788767bbe33cf77a5f6df931cd86c71f294f/data/"
_MIT_NSFW = "MIT (LAION-AI/CLIP-based-NSFW-Detector, license.md)"


@dataclass(frozen=True)
class HeadFile:
    """One head's file. ``size``/``sha256`` pin the file as it lies in the heads folder (and on a
    mirror); ``upstream_size``/``upstream_sha256`` pin the upstream file when it is another format
    (Q16's pickled ``prompts.p``, converted to ``prompts.npy``)."""

    name: str
    rel: str
    url: str
    size: int
    sha256: str
    dim: int
    licence: str
    upstream_size: int | None = None
    upstream_sha256: str | None = None

    @property
    def converted(self) -> bool:
        return self.upstream_sha256 is not None


HEAD_FILES: tuple[HeadFile, ...] = (
    HeadFile("nsfw-l14", "laion_nsfw_detector/clip_autokeras_binary_nsfw.zip", _NSFW + "clip_autokeras_binary_nsfw.zip",
             1094585, "905520bb0336accc73ee282c605d926aef90cf14248889d44b9cee50eef71f8a", 768, _MIT_NSFW),
    HeadFile("nsfw-b32", "laion_nsfw_detector/clip_autokeras_nsfw_b32.zip", _NSFW + "clip_autokeras_nsfw_b32.zip",
             231831, "78715ab9d64485167e8c9ade3b8e6761a17a16c24d114bd47431ac1dab46462b", 512, _MIT_NSFW),
    HeadFile("aesthetic-v2-l14", "improved_aesthetic_predictor/sac+logos+ava1-l14-linearMSE.pth",
             _AES_V2 + "sac%2Blogos%2Bava1-l14-linearMSE.pth",
             3714759, "21dd590f3ccdc646f0d53120778b296013b096a035a2718c9cb0d511bff0f1e0", 768,
             "Apache-2.0 (christophschuhmann/improved-aesthetic-predictor, LICENSE)"),
    HeadFile("aesthetic-v1-b32", "laion_aesthetic_v1/sa_0_4_vit_b_32_linear.pth", _AES_V1 + "sa_0_4_vit_b_32_linear.pth",
             3047, "c7b14cead230694acc7b9447974d3cad78003c72da032e402a303b6c2429e85f", 512,
             "MIT (LAION-AI/aesthetic-predictor, LICENSE)"),
    HeadFile("aesthetic-v1-l14", "laion_aesthetic_v1/sa_0_4_vit_l_14_linear.pth", _AES_V1 + "sa_0_4_vit_l_14_linear.pth",
             4071, "2cd4e60f4f24ae3bcd57b847b13c1f3ba27edc28cc1a7f9ce74ee9f421243cba", 768,
             "MIT (LAION-AI/aesthetic-predictor, LICENSE)"),
    HeadFile("q16-b32", "q16/ViT-B-32/prompts.npy", _Q16 + "ViT-B-32/prompts.p",
             2176, "ed5c7a0456df4722b290b28a537b5682eb7e68a10bc7bba41ed5aea32a53e520", 512, "MIT (ml-research/Q16)",
             2207, "53cfd214d31115baf9f6bf28936edda062c2f75b5abf3600e25a93d01a97bdce"),
    HeadFile("q16-l14", "q16/ViT-L-14/prompts.npy", _Q16 + "ViT-L-14/prompts.p",
             3200, "eb1426d84248dc6ed46b854e4b536a4d14fd2b9de89cd9e6ed3bbafd246d6f98", 768, "MIT (ml-research/Q16)",
             3231, "9b6c411824c2f64e0f847aa3c9f2b15b8e3a6c75e0efd82f2f672670c97ccad5"),
    HeadFile("violence-b32", "laion_nsfw_detector/violence_detection_vit_b_32.npy", _NSFW + "violence_detection_vit_b_32.npy",
             4224, "76909cca3e77abbbb21313895756773a9c6fb26c9cc743f3ef0625f025741982", 512, _MIT_NSFW),
    HeadFile("violence-l14", "laion_nsfw_detector/violence_detection_vit_l_14.npy", _NSFW + "violence_detection_vit_l_14.npy",
             6272, "cc08f81ef50b1ef71452ddc87285fe6fbbc01b6fe8f8b8c24482c386ef2ab7e1", 768, _MIT_NSFW),
)
BY_NAME: dict[str, HeadFile] = {f.name: f for f in HEAD_FILES}
BY_REL: dict[str, HeadFile] = {f.rel: f for f in HEAD_FILES}


def default_heads_dir() -> Path:
    """``$WORKBENCH_HEADS_DIR``, else ``~/.cache/laion-workbench/heads``."""
    env = os.environ.get("WORKBENCH_HEADS_DIR")
    return Path(env).expanduser() if env else DEFAULT_HEADS_DIR.expanduser()


def offline() -> bool:
    """True when ``$WORKBENCH_OFFLINE`` is set to a true value (1, true, yes, on)."""
    return os.environ.get("WORKBENCH_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def files_for(name: str) -> list[HeadFile]:
    """The files head `name` needs."""
    if name not in BY_NAME:
        raise ConfigError(f"unknown head {name!r}; known: {', '.join(BY_NAME)}")
    return [BY_NAME[name]]


def is_cached(f: HeadFile, heads_dir: str | Path | None = None) -> bool:
    return (Path(heads_dir) if heads_dir else default_heads_dir()).joinpath(f.rel).is_file()


def ensure_head(name: str, heads_dir: str | Path | None = None, mirror: str | None = None) -> list[Path]:
    """The paths of head `name`'s files in the heads folder, each fetched first when it is missing."""
    return [ensure_file(f, heads_dir, mirror) for f in files_for(name)]


def ensure_file(f: HeadFile | str, heads_dir: str | Path | None = None, mirror: str | None = None) -> Path:
    """The path of one head file (a :class:`HeadFile` or its relative path) in the heads folder,
    fetched when it is missing: from `mirror` (else ``$WORKBENCH_HEADS_MIRROR``), else from upstream.
    A file already there is used as it is."""
    if isinstance(f, str):
        if f not in BY_REL:
            raise ConfigError(f"not a registered head file: {f!r}")
        f = BY_REL[f]
    root = Path(heads_dir) if heads_dir else default_heads_dir()
    if (root / f.rel).is_file():
        return root / f.rel
    return fetch_file(f, root, mirror)


def fetch_file(f: HeadFile, heads_dir: str | Path | None = None, mirror: str | None = None) -> Path:
    """Fetch `f` now (replacing a cached copy only once the new one has passed its check)."""
    root = Path(heads_dir) if heads_dir else default_heads_dir()
    dest = root / f.rel
    mirror = mirror or os.environ.get("WORKBENCH_HEADS_MIRROR") or None
    local = _local_mirror(mirror) if mirror else None
    if mirror and local is None and offline():
        raise HeadFetchError(_place(f, dest, "is not in the heads folder and WORKBENCH_OFFLINE is set"), dest)
    if not mirror and offline():
        got = _placed_upstream(f, dest)
        if got is not None:
            return got
        raise HeadFetchError(_place(f, dest, "is not in the heads folder and WORKBENCH_OFFLINE is set"), dest)
    made = [d for d in (dest.parent, *dest.parent.parents) if not d.exists()]
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.{os.getpid()}-{secrets.token_hex(4)}.fetch"
    tmp.mkdir()
    ok = False
    try:
        if local is not None:
            src = local / f.rel
            if not src.is_file():
                raise HeadFetchError(_place(f, dest, f"is not on the mirror ({src} does not exist)"), dest)
            got = tmp / dest.name
            shutil.copyfile(src, got)
            source = str(src)
        elif mirror:
            source = mirror.rstrip("/") + "/" + f.rel
            got = _download(source, f.size, f.sha256, tmp, dest.name, f, dest)
        else:
            source = f.url
            if f.converted:
                raw = _download(f.url, f.upstream_size, f.upstream_sha256, tmp, Path(urlparse(f.url).path).name, f, dest)
                got = _convert(raw, tmp / dest.name)
            else:
                got = _download(f.url, f.size, f.sha256, tmp, dest.name, f, dest)
        check(got, f.size, f.sha256, f.rel, source)
        os.replace(got, dest)
        ok = True
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        for d in made if not ok else ():  # folders made for a file that was refused go too
            try:
                d.rmdir()
            except OSError:
                pass
    return dest


def check(path: Path, size: int, sha256: str, rel: str, source: str) -> None:
    """Refuse `path` unless its size and sha256 are the pinned ones (one check for every source)."""
    got_size = path.stat().st_size
    got_sha = sha256_file(path) if got_size == size else None
    if got_size != size or got_sha != sha256:
        what = (f"size {got_size} bytes, pinned {size}" if got_size != size
                else f"sha256 {got_sha}, pinned {sha256}")
        raise HeadChecksumError(f"not the pinned head file {rel} ({what}); refused, nothing was kept", source)


def _download(url: str, size: int, sha256: str, folder: Path, fname: str, f: HeadFile, dest: Path) -> Path:
    """`url` downloaded by pooch (with retries) into `folder`/`fname`, its sha256 checked by pooch."""
    import pooch
    import requests

    pooch.get_logger().setLevel("WARNING")  # its "Downloading ..." lines name our temporary folder
    p = pooch.create(path=folder, base_url="", registry={fname: f"sha256:{sha256}"}, urls={fname: url},
                     retry_if_failed=2, allow_updates=False)
    try:
        got = Path(p.fetch(fname))
    except ValueError as exc:  # pooch: the hash differs
        raise HeadChecksumError(f"not the pinned head file {f.rel} ({first_line(exc)}); refused, nothing was kept",
                                url) from None
    except requests.exceptions.HTTPError as exc:
        code = exc.response.status_code if exc.response is not None else "error"
        raise HeadFetchError(_place(f, dest, f"could not be downloaded from {url} (HTTP {code})"), dest) from None
    except requests.exceptions.ConnectionError:
        raise HeadFetchError(_place(f, dest, f"could not be downloaded from {url} (no connection: offline?)"),
                             dest) from None
    except (requests.exceptions.RequestException, OSError) as exc:
        raise HeadFetchError(_place(f, dest, f"could not be downloaded from {url} ({first_line(exc)})"), dest) from None
    check(got, size, sha256, f.rel if url != f.url or not f.converted else f"{f.rel} (upstream {fname})", url)
    return got


def _convert(raw: Path, out: Path) -> Path:
    """Upstream Q16 ``prompts.p`` (a pickled numpy array) written as ``prompts.npy`` (read with the
    restricted unpickler: numpy arrays only)."""
    import numpy as np

    from workbench.models.arraypickle import load_array_pickle

    arr = load_array_pickle(raw.read_bytes(), raw)
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    out.write_bytes(buf.getvalue())
    return out


def _placed_upstream(f: HeadFile, dest: Path) -> Path | None:
    """Offline, a converted head's upstream file placed beside its destination (Q16's ``prompts.p``):
    checked against its pin, converted and stored; None when there is none."""
    if not f.converted:
        return None
    raw = dest.with_name(Path(urlparse(f.url).path).name)
    if not raw.is_file():
        return None
    check(raw, f.upstream_size, f.upstream_sha256, str(raw), str(raw))
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}-{secrets.token_hex(4)}.partial")
    try:
        _convert(raw, tmp)
        check(tmp, f.size, f.sha256, f.rel, str(raw))
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _local_mirror(mirror: str) -> Path | None:
    """The folder of a file:// or plain-path mirror; None for http(s)://."""
    u = urlparse(mirror)
    if u.scheme in ("http", "https"):
        return None
    if u.scheme == "file":
        return Path(unquote(u.path))
    if u.scheme and len(u.scheme) > 1:
        raise ConfigError(f"a heads mirror is an http(s)://, file:// URL or a local folder, not {mirror!r}")
    return Path(mirror).expanduser()


def _place(f: HeadFile, dest: Path, why: str) -> str:
    """One line: which file is missing, why, and what to place where (the path is the error's path)."""
    if f.converted:
        how = (f"place the heads folder's {dest.name} here (a mirror serves it), or upstream's "
               f"{Path(urlparse(f.url).path).name} beside it ({f.url})")
    else:
        how = f"place the file here (upstream: {f.url})"
    return f"head {f.name}'s file {why}; {how}"


# -- what `workbench heads` shows and does ------------------------------------------------------------
def heads_table(heads_dir: str | Path | None = None) -> list[dict]:
    """One row per head: name, input width, the file's path in the heads folder, whether it is cached
    there, upstream address, size, sha256 and licence."""
    root = Path(heads_dir) if heads_dir else default_heads_dir()
    return [{"name": f.name, "dim": f.dim, "file": f.rel, "path": str(root / f.rel),
             "cached": (root / f.rel).is_file(), "upstream": f.url, "size": f.size, "sha256": f.sha256,
             "licence": f.licence} for f in HEAD_FILES]


def fetch_heads(names=None, mirror: str | None = None, heads_dir: str | Path | None = None) -> list[dict]:
    """Fetch the files of the named heads (all when `names` is empty) into the heads folder now. A
    cached file is checked against its pin and kept when it matches (else fetched again). Returns one
    row per file: name, file, path, status (``cached`` or ``fetched``)."""
    wanted = [f for n in (names or [f.name for f in HEAD_FILES]) for f in files_for(n)]
    root = Path(heads_dir) if heads_dir else default_heads_dir()
    out = []
    for f in dict.fromkeys(wanted):
        dest = root / f.rel
        status = "fetched"
        if dest.is_file():
            try:
                check(dest, f.size, f.sha256, f.rel, str(dest))
                status = "cached"
            except HeadChecksumError:
                status = "replaced"
        if status != "cached":
            fetch_file(f, root, mirror)
        out.append({"name": f.name, "file": f.rel, "path": str(dest), "status": status})
    return out
