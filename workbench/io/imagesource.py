"""Where images to embed come from: image folders, img2dataset webdataset tars, or a table of paths.

    items = list_images("./photos")                  # every file, sorted; captions from sidecars
    items = list_images("./shards")                  # <n>.tar webdataset shards: jpg/txt/json samples
    items = list_images("list.parquet")              # image_path (or path/filepath/file:// url) + caption
    data = read_image_bytes(items[0])

Every candidate becomes an :class:`ImageItem`, in a deterministic order, *before* anything is
decoded: a file that is not an image is an item too, and fails when it is decoded (the embed run
records it and goes on). A tar that is truncated or damaged part-way gives its readable samples, a
sample whose image is cut short (it fails with that error), and one item for its unreadable rest
(key ``<tar stem>:unreadable``, which fails saying so). A symlink loop is refused.

Captions, in order of preference: a sidecar ``<stem>.txt`` beside the image
(or the sample's ``.txt`` in a tar), a caption table given with ``captions=`` (columns: a path or file
name, and ``caption``/``text``), the sample's json ``caption``, else the file name made readable.
Remote URLs are refused: download them with img2dataset first.
"""
from __future__ import annotations

import csv
import json
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from workbench.errors import LayoutError, WorkbenchError
from workbench.io.images import IMAGE_EXTENSIONS

TABLE_SUFFIXES = (".parquet", ".csv", ".tsv")
PATH_COLUMNS = ("image_path", "path", "filepath", "file", "filename", "url")
CAPTION_COLUMNS = ("caption", "text", "TEXT", "Caption")
META_KEYS = ("url", "uid", "original_width", "original_height", "sha256", "md5")  # kept as columns when present


@dataclass(frozen=True)
class ImageItem:
    key: str  # unique and stable: the tar sample key, the path relative to the folder, or the table row
    caption: str | None
    path: str  # the image file, or the tar holding it
    member: str | None = None  # the image's member name in `path` when `path` is a tar (None: none there)
    tar: bool = False  # `path` is a webdataset tar
    meta: dict = field(default_factory=dict, compare=False, hash=False)
    offset: int | None = field(default=None, compare=False)  # the member's data offset and size in the tar,
    size: int | None = field(default=None, compare=False)    # found while listing (no second pass over the tar)
    error: str | None = field(default=None, compare=False)  # known while listing (a truncated tar): it fails with this

    @property
    def where(self) -> str:
        return f"{self.path}[{self.member}]" if self.member else self.path


def _readable_name(stem: str) -> str:
    return " ".join(stem.replace("_", " ").replace("-", " ").split())


def _is_image_name(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_EXTENSIONS


def list_images(src: str | Path, captions: str | Path | None = None) -> list[ImageItem]:
    """The images under `src` (a folder of images, a folder of webdataset tars, or a table)."""
    from workbench.io.npyfile import symlink_loop

    src = Path(src)
    if not src.exists():
        raise LayoutError(symlink_loop(src) or "no such file or folder", src)
    table = _caption_table(Path(captions)) if captions else {}
    if src.is_file():
        if src.suffix.lower() in TABLE_SUFFIXES:
            return _from_table(src)
        if src.suffix == ".tar":
            return _from_tars([src], table)
        raise LayoutError("give a folder of images or of .tar shards, or a .parquet/.csv list of image paths", src)
    tars = sorted(src.glob("*.tar"), key=_tar_order)
    if tars:
        return _from_tars(tars, table)
    return _from_folder(src, table, skip={Path(captions).resolve()} if captions else set())


# -- folders ------------------------------------------------------------------------------------
def _from_folder(root: Path, table: dict, skip: set) -> list[ImageItem]:
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if not name.startswith("."):
                files.append(Path(dirpath) / name)
                if files[-1].is_symlink():
                    _refuse_loop(files[-1])
    files.sort(key=lambda p: p.relative_to(root).as_posix())
    stems_with_images = {(p.parent, p.stem) for p in files if _is_image_name(p.name)}
    items = []
    for p in files:
        suffix = p.suffix.lower()
        if p.resolve() in skip or suffix in TABLE_SUFFIXES:
            continue
        if suffix in (".txt", ".json") and (p.parent, p.stem) in stems_with_images:
            continue  # a sidecar of an image
        rel = p.relative_to(root).as_posix()
        caption = None
        sidecar = p.with_suffix(".txt")
        if _is_image_name(p.name) and sidecar.is_file():
            caption = sidecar.read_text(encoding="utf-8", errors="replace").strip()
        if caption is None:
            caption = table.get(rel, table.get(p.name))
        if caption is None:
            caption = _readable_name(p.stem)
        items.append(ImageItem(key=rel.rsplit(".", 1)[0] if "." in p.name else rel, caption=caption, path=str(p)))
    if not items:
        raise LayoutError("no files to embed in this folder", root)
    from collections import Counter
    from dataclasses import replace

    twice = {k for k, n in Counter(it.key for it in items).items() if n > 1}  # a.jpg and a.png: keep the suffix
    return [replace(it, key=Path(it.path).relative_to(root).as_posix()) if it.key in twice else it for it in items]


def _refuse_loop(path: Path) -> None:
    """A symlink loop in a source folder is refused (one line naming it): a walk cannot tell what it stood for."""
    from workbench.io.npyfile import symlink_loop

    loop = symlink_loop(path)
    if loop:
        raise LayoutError(loop, path)


def _caption_table(path: Path) -> dict:
    """file path or name -> caption, from a .parquet/.csv/.tsv with a path column and a caption column."""
    rows = _read_table(path)
    if not rows:
        return {}
    cols = rows[0].keys()
    pcol = next((c for c in PATH_COLUMNS if c in cols), None)
    ccol = next((c for c in CAPTION_COLUMNS if c in cols), None)
    if pcol is None or ccol is None:
        raise LayoutError(f"a caption table needs a path column ({'/'.join(PATH_COLUMNS)}) and a caption column "
                          f"({'/'.join(CAPTION_COLUMNS)}); it has {sorted(cols)}", path)
    return {str(r[pcol]): (None if r[ccol] is None else str(r[ccol])) for r in rows if r[pcol] is not None}


def _read_table(path: Path) -> list[dict]:
    if not path.is_file():
        raise LayoutError("no such table", path)
    try:
        if path.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path).to_pylist()
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f, delimiter="\t" if path.suffix.lower() == ".tsv" else ","))
    except (OSError, ValueError, csv.Error) as exc:
        raise LayoutError(f"cannot read the table ({str(exc).splitlines()[0]})", path) from None
    except Exception as exc:  # noqa: BLE001 - pyarrow's errors (ArrowInvalid) for a damaged parquet
        raise LayoutError(f"cannot read the table ({str(exc).splitlines()[0]})", path) from None


# -- tables of paths --------------------------------------------------------------------------------
def _from_table(path: Path) -> list[ImageItem]:
    rows = _read_table(path)
    if not rows:
        raise LayoutError("the table has no rows", path)
    cols = list(rows[0].keys())
    pcol = next((c for c in PATH_COLUMNS if c in cols), None)
    if pcol is None:
        raise LayoutError(f"no image path column ({', '.join(PATH_COLUMNS)}) in {cols}", path)
    ccol = next((c for c in CAPTION_COLUMNS if c in cols), None)
    kcol = "key" if "key" in cols else None
    items = []
    for i, r in enumerate(rows):
        raw = r[pcol]
        if raw is None or str(raw).strip() == "":
            raise WorkbenchError(f"empty {pcol}", path, row=i)
        ref = str(raw).strip()
        if ref.startswith(("http://", "https://")):
            raise WorkbenchError(f"{ref} is a remote URL: download the images first (img2dataset), then embed them",
                                 path, row=i)
        if ref.startswith("file://"):
            ref = ref[len("file://"):]
        p = Path(ref)
        if not p.is_absolute():
            p = path.parent / p
        meta = {k: r[k] for k in META_KEYS if k in r and k != pcol}
        if pcol == "url":
            meta["url"] = str(raw)
        caption = None if ccol is None or r[ccol] is None else str(r[ccol])
        items.append(ImageItem(key=str(r[kcol]) if kcol and r[kcol] is not None else f"{i:09d}",
                               caption=caption if caption is not None else _readable_name(p.stem), path=str(p), meta=meta))
    if len({it.key for it in items}) != len(items):
        raise LayoutError("the table's keys are not unique", path)
    return items


# -- webdataset tars ---------------------------------------------------------------------------------
def _tar_order(p: Path):
    digits = "".join(ch for ch in p.stem if ch.isdigit())
    return (int(digits) if digits else -1, p.name)


def _from_tars(tars: list[Path], table: dict) -> list[ImageItem]:
    items = []
    for tar in tars:
        samples: dict[str, dict[str, str]] = {}
        order: list[str] = []
        where: dict[str, tuple[int, int]] = {}
        texts: dict[str, bytes] = {}
        broken = None  # why the tar stops being readable part-way (truncated, damaged): its rest is one failed item
        try:
            with tarfile.open(tar, "r:") as tf:
                for m in tf:
                    if not m.isfile():
                        continue
                    base = m.name.rsplit("/", 1)[-1]
                    if "." not in base:
                        continue
                    prefix = m.name[: len(m.name) - len(base)]
                    key, ext = prefix + base.split(".", 1)[0], base.split(".", 1)[1].lower()
                    if key not in samples:
                        samples[key] = {}
                        order.append(key)
                    samples[key][ext] = m.name
                    where[m.name] = (m.offset_data, m.size)
                    if ext in ("txt", "json"):
                        f = tf.extractfile(m)
                        texts[m.name] = f.read() if f is not None else b""
        except (tarfile.TarError, OSError) as exc:
            if tar.is_symlink():
                _refuse_loop(tar)
            broken = exc
        try:
            tar_bytes = tar.stat().st_size
        except OSError:
            tar_bytes = 0
        for key in order:
            members = samples[key]
            image = next((members[e] for e in members if "." + e in IMAGE_EXTENSIONS), None)
            meta = {}
            if members.get("json") in texts:
                try:
                    parsed = json.loads(texts[members["json"]])
                    if isinstance(parsed, dict):
                        meta = {k: parsed[k] for k in META_KEYS if k in parsed}
                        meta["json_caption"] = parsed.get("caption")
                except ValueError:
                    pass
            caption = None
            if members.get("txt") in texts:
                caption = texts[members["txt"]].decode("utf-8", errors="replace").strip()
            if caption is None:
                caption = table.get(key) or meta.get("json_caption")
            meta.pop("json_caption", None)
            offset, size = where.get(image, (None, None)) if image else (None, None)
            error = None
            if offset is not None and offset + size > tar_bytes:
                error = (f"member {image} is cut short: the tar ends at byte {tar_bytes}, inside it "
                         "(a truncated tar)")
            items.append(ImageItem(key=key, caption=caption if caption is not None else "", path=str(tar), member=image,
                                   tar=True, meta=meta, offset=offset, size=size, error=error))
        if broken is not None:
            end = min(max((o + n for o, n in where.values()), default=0), tar_bytes)
            items.append(ImageItem(key=f"{tar.stem}:unreadable", caption="", path=str(tar), tar=True, error=(
                f"unreadable tar past byte {end} of {tar_bytes} ({broken}): the samples stored after it are lost "
                "(the tar is truncated or damaged)")))
    return items


# -- reading -------------------------------------------------------------------------------------------
def read_image_bytes(item: ImageItem) -> bytes:
    """The encoded image of an item. Raises WorkbenchError (naming the file) when it is missing."""
    if item.error is not None:
        raise WorkbenchError(item.error, item.path)
    if item.tar and item.member is None:
        raise WorkbenchError(f"sample {item.key} has no image member", item.path)
    if item.tar:
        from workbench.io.images import tar_index

        entry = (item.offset, item.size) if item.offset is not None else tar_index(item.path).get(item.member)
        if entry is None:
            raise WorkbenchError(f"no member {item.member}", item.path)
        try:
            with open(item.path, "rb") as f:
                f.seek(entry[0])
                data = f.read(entry[1])
        except OSError as exc:
            raise WorkbenchError(f"cannot read the tar ({exc.strerror})", item.path) from None
        if len(data) != entry[1]:
            raise WorkbenchError(f"member {item.member} is cut short (the tar changed since it was listed?)", item.path)
        return data
    try:
        return Path(item.path).read_bytes()
    except FileNotFoundError:
        raise WorkbenchError("image file not found", item.path) from None
    except OSError as exc:
        raise WorkbenchError(f"cannot read the image file ({exc.strerror})", item.path) from None


def fingerprint(items: list[ImageItem]) -> str:
    """A digest of the items and their files' sizes and modification times (for the resume plan)."""
    import hashlib

    h = hashlib.sha256()
    seen = set()
    for it in items:
        h.update(f"|{it.key}|{it.path}|{it.member}|{it.caption}".encode())
        if it.path not in seen:
            seen.add(it.path)
            try:
                st = os.stat(it.path)
                h.update(f":{st.st_size}:{int(st.st_mtime)}".encode())
            except OSError:
                h.update(b":missing")
    return h.hexdigest()[:32]
