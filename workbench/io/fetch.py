"""Real shards in one call: :func:`fetch_release` downloads parts of a public release (or of any
folder in the clip-retrieval layout served over HTTP) into a folder that opens as a collection.

    r = fetch_release("laion400m", "/data/laion400m", parts="0-1", progress=True)
    r.rows, r.bytes                     # rows of the collection now in /data/laion400m, bytes of the parts
    workbench.open_collection(r.dst)

SOURCE is a name of :data:`workbench.io.releases.RELEASES` or an ``http(s)://`` base URL of a folder
holding ``img_emb/img_emb_<i>.npy`` (optional ``text_emb/``, ``metadata/``); ``<i>`` unpadded, 4
digits (LAION-5B) or clip-retrieval's ``int(log10(n))+1`` digits, found by probing part 0.

The download protocol, per file:

- bytes go to ``<file>.part`` beside the final name; a ``.part`` left by a kill or a dropped
  connection is continued with an HTTP ``Range: bytes=<size>-`` request (a server that ignores Range
  and answers 200 restarts the file from its first byte; a 206 must start where the file stops);
- a dropped connection is retried (``retries`` times, resuming each time); then
  :class:`~workbench.errors.IncompleteError`: the same call again resumes;
- the size is checked against the release's listing and the server's Content-Length /
  Content-Range, the sha256 against the published one where there is one; a mismatch is refused
  and the file is not renamed into place;
- only a complete, checked file is renamed to its final name.

``DST/fetch.json`` (written atomically at the start and again at the end) records the source, the
parts, and every file with its size and sha256, and the finished time. A folder holding another
source's fetch, or anything but a fetch, is refused.
"""
from __future__ import annotations

import http.client
import json
import os
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from workbench.errors import IncompleteError, WorkbenchError
from workbench.io.files import sha256_file, write_text_atomic
from workbench.io.progress import progress_bar
from workbench.io.staging import STAGING, lock_destination
from workbench.io.releases import FileSpec, Release, release

MANIFEST = "fetch.json"
MANIFEST_FORMAT = "workbench-fetch/1"
PART = ".part"
# <i> in clip-retrieval layout names: unpadded (LAION-400M), 4 digits (LAION-5B), or clip-retrieval's
# int(log10(n_parts))+1 digits; probed in this order on part 0
PADDINGS = (0, 4, 2, 3, 5, 6)
URL_FILES = (FileSpec("img_emb/img_emb_{i}.npy", "img_emb/img_emb_{i}.npy"),
             FileSpec("text_emb/text_emb_{i}.npy", "text_emb/text_emb_{i}.npy", required=False),
             FileSpec("metadata/metadata_{i}.parquet", "metadata/metadata_{i}.parquet", required=False))
CHUNK = 1 << 20
MAX_PROBE = 1 << 20  # most parts a URL source is probed for


def _user_agent() -> str:
    from workbench import __version__

    return f"laion-workbench/{__version__} (+urllib)"


@dataclass
class RemoteFile:
    """One file to fetch: where from, where to (relative to DST), and what it must be."""

    part: int
    url: str
    path: str
    size: int | None = None  # from the listing, else the server's Content-Length
    sha256: str | None = None  # published (the listing), else None


@dataclass
class FetchResult:
    source: str
    dst: Path
    parts: list[int]
    files: list[dict]  # path, url, size, sha256 (of the parts asked for)
    bytes: int
    rows: int  # rows of the collection now in DST
    downloaded: int = 0  # bytes transferred by this call
    resumed: list[str] = field(default_factory=list)  # files continued from a .part

    def to_json(self) -> dict:
        return {"source": self.source, "dst": str(self.dst), "parts": self.parts, "files": self.files,
                "bytes": self.bytes, "rows": self.rows}


class _Dropped(Exception):
    """The connection ended before the whole body arrived."""


# -- arguments ------------------------------------------------------------------------------------
def parse_parts(spec) -> tuple[int, int] | None:
    """``"A-B"`` (inclusive) or ``"N"`` -> (A, B); None stays None (all parts)."""
    if spec is None:
        return None
    if isinstance(spec, int) and not isinstance(spec, bool):
        spec = str(spec)
    if isinstance(spec, (tuple, list, range)) and len(spec) and all(isinstance(x, int) for x in spec):
        spec = f"{min(spec)}-{max(spec)}"
    m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", str(spec))
    if not m:
        raise WorkbenchError(f"--parts {spec!r}: expected A-B (inclusive, e.g. 0-1) or one part number N")
    a = int(m.group(1))
    b = int(m.group(2)) if m.group(2) is not None else a
    if b < a:
        raise WorkbenchError(f"--parts {spec!r}: the last part comes before the first")
    return a, b


def _choose(parts: tuple[int, int] | None, count: int, what: str) -> list[int]:
    if parts is None:
        return list(range(count))
    a, b = parts
    if b >= count:
        raise WorkbenchError(f"part {b} is beyond {what}, which has {count} parts (0-{count - 1})")
    return list(range(a, b + 1))


def _source(source) -> tuple[Release, str]:
    """The release for `source` (a Release, a name, or a base URL) and its name as recorded."""
    if isinstance(source, Release):
        return source, source.name
    source = str(source)
    if re.match(r"https?://", source, re.I):
        base = source if source.endswith("/") else source + "/"
        return Release(name=base, title=base, base_url=base, layout="embeddings", enumerate="numbered",
                       files=URL_FILES), base
    return release(source), source


# -- HTTP -----------------------------------------------------------------------------------------
def _request(url: str, method: str = "GET", start: int = 0, timeout: float = 60.0):
    """The server's response (an HTTPError is a response too: its code and headers are read)."""
    headers = {"User-Agent": _user_agent(), "Accept-Encoding": "identity"}
    if start:
        headers["Range"] = f"bytes={start}-"
    req = urllib.request.Request(url, headers=headers, method=method)
    try:
        return urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as exc:
        return exc


def _length(resp) -> int | None:
    v = resp.headers.get("Content-Length")
    return int(v) if v is not None and v.strip().isdigit() else None


def _probe(url: str, timeout: float) -> tuple[bool, int | None]:
    """Whether `url` exists, and its size when the server says it (HEAD; GET when HEAD is refused)."""
    for method in ("HEAD", "GET"):
        try:
            resp = _request(url, method, timeout=timeout)
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            raise WorkbenchError(f"cannot reach the server ({getattr(exc, 'reason', None) or exc})", url) from None
        code = resp.getcode()
        resp.close()
        if code in (404, 410):
            return False, None
        if code in (405, 501) and method == "HEAD":
            continue
        if code >= 400:
            raise WorkbenchError(f"the server answers HTTP {code}", url)
        return True, _length(resp)
    raise WorkbenchError("the server refuses HEAD and GET", url)


def _list_hub(listing: str, timeout: float) -> dict[str, tuple[int | None, str | None]]:
    """Root files of a Hugging Face Hub repository: path -> (size, sha256 of LFS files), every page
    of the tree API followed (its Link: rel="next" header)."""
    out: dict[str, tuple[int | None, str | None]] = {}
    url: str | None = listing
    while url:
        resp = _request(url, timeout=timeout)
        if resp.getcode() != 200:
            raise WorkbenchError(f"cannot list the release (HTTP {resp.getcode()})", url)
        try:
            entries = json.loads(resp.read().decode("utf-8"))
        except ValueError:
            raise WorkbenchError("the listing is not JSON", url) from None
        if not isinstance(entries, list):
            raise WorkbenchError("the listing is not a list of files", url)
        for e in entries:
            if isinstance(e, dict) and e.get("type") == "file" and "/" not in str(e.get("path", "")):
                lfs = e.get("lfs") if isinstance(e.get("lfs"), dict) else {}
                out[e["path"]] = (lfs.get("size", e.get("size")), lfs.get("oid"))
        m = re.search(r'<([^>]+)>\s*;\s*rel="?next"?', resp.headers.get("Link", ""))
        url = m.group(1) if m else None
    return out


# -- planning -------------------------------------------------------------------------------------
def _name(i: int, padding: int) -> str:
    return str(i).zfill(padding) if padding else str(i)


def _find_padding(rel: Release, first: int, timeout: float) -> int:
    spec = rel.files[0]
    for n in dict.fromkeys((0, first)):
        for pad in PADDINGS:
            if _probe(rel.base_url + spec.remote.format(i=_name(n, pad)), timeout)[0]:
                return pad
    raise WorkbenchError(f"no {spec.remote.format(i='<i>')} for part {first} (tried paddings "
                         f"{', '.join(_name(first, p) for p in PADDINGS)}): not a folder in the clip-retrieval layout?",
                         rel.base_url + spec.remote.format(i=_name(first, 0)))


def _count_parts(rel: Release, pad: int, timeout: float) -> int:
    """Parts 0..n-1 present on the server (numbered without gaps, as clip-retrieval writes them):
    doubling probes of the first file kind until one is missing, then bisection."""
    exists = lambda i: _probe(rel.base_url + rel.files[0].remote.format(i=_name(i, pad)), timeout)[0]  # noqa: E731
    lo, hi = 0, 1  # part lo exists
    while hi < MAX_PROBE and exists(hi):
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if exists(mid) else (lo, mid)
    return lo + 1


def plan(source, parts=None, timeout: float = 60.0) -> tuple[Release, list[int], list[RemoteFile]]:
    """The release, the part numbers and every file to fetch, checked to exist on the server (a
    missing file raises naming its URL) before anything is downloaded."""
    rel, _ = _source(source)
    wanted = parse_parts(parts)
    if rel.enumerate == "listing":
        listed = _list_hub(rel.listing, timeout)
        head, _, tail = rel.files[0].remote.partition("{name}")
        stems = sorted(p[len(head): len(p) - len(tail)] for p in listed
                       if p.startswith(head) and p.endswith(tail) and len(p) > len(head) + len(tail))
        if not stems:
            raise WorkbenchError(f"the listing holds no {rel.files[0].remote.format(name='<name>')} files", rel.listing)
        chosen = _choose(wanted, len(stems), f"the listing of {rel.name}")
        files = []
        for i in chosen:
            for spec in rel.files:
                remote = spec.remote.format(name=stems[i])
                if remote not in listed:
                    raise WorkbenchError(f"part {i} ({stems[i]}) has no {remote} in the listing", rel.listing)
                size, sha = listed[remote]
                files.append(RemoteFile(i, rel.base_url + remote, spec.local.format(name=stems[i]), size, sha))
        return rel, chosen, files
    pad = rel.padding
    specs = list(rel.files)
    if rel.parts is None:  # a URL: padding and part count from the server
        pad = _find_padding(rel, wanted[0] if wanted else 0, timeout)
    count = rel.parts if rel.parts is not None else (_count_parts(rel, pad, timeout) if wanted is None else None)
    chosen = _choose(wanted, count, rel.name) if count is not None else list(range(wanted[0], wanted[1] + 1))
    files = []
    for i in chosen:
        for spec in list(specs):
            url = rel.base_url + spec.remote.format(i=_name(i, pad))
            found, size = _probe(url, timeout)
            if not found and (spec.required or i != chosen[0]):
                raise WorkbenchError(f"part {i} is missing on the server (HTTP 404 for {spec.remote.format(i=_name(i, pad))})",
                                     url)
            if not found:  # an optional kind absent from the first part: this folder has none
                specs.remove(spec)
                continue
            files.append(RemoteFile(i, url, spec.local.format(i=_name(i, pad)), size))
    return rel, chosen, files


# -- one file -------------------------------------------------------------------------------------
def _content_range(resp) -> tuple[int, int | None] | None:
    m = re.fullmatch(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", resp.headers.get("Content-Range", ""))
    if not m:
        return None
    return int(m.group(1)), (None if m.group(3) == "*" else int(m.group(3)))


def _mismatch(f: RemoteFile, part: Path, message: str) -> WorkbenchError:
    part.unlink(missing_ok=True)
    return WorkbenchError(message + f"; nothing was put in place of {f.path}", f.url)


def _download(f: RemoteFile, part: Path, bar, timeout: float) -> int:
    """One request: continue `part` from its size (or restart it), to the end of the body. Returns the
    bytes written; raises _Dropped when the body ends early, WorkbenchError on a refused answer."""
    have = part.stat().st_size if part.exists() else 0
    if f.size is not None and have == f.size:
        return 0  # complete: checked by the caller
    if f.size is not None and have > f.size:
        part.unlink()
        have = 0
    resp = _request(f.url, start=have, timeout=timeout)
    try:
        code = resp.getcode()
        if code in (404, 410):
            raise WorkbenchError(f"part {f.part} is missing on the server (HTTP {code})", f.url)
        if code == 416 and have:  # the .part is as long as the file or longer (size unknown): start over
            part.unlink()
            raise _Dropped()
        if code >= 500 or code == 429:
            raise _Dropped()
        if code not in (200, 206):
            raise WorkbenchError(f"the server answers HTTP {code}", f.url)
        if code == 206:
            rng = _content_range(resp)
            if rng is None or rng[0] != have:
                raise _mismatch(f, part, f"the server answered a Range request from byte {have} with "
                                         f"{resp.headers.get('Content-Range')!r}")
            total = rng[1] if rng[1] is not None else (have + _length(resp) if _length(resp) is not None else None)
            mode = "ab"
        else:  # 200: the whole file (a server that ignores Range included): start over
            if have:
                bar.update(-have)
            have, mode = 0, "wb"
            total = _length(resp)
        if total is not None and f.size is not None and total != f.size:
            raise _mismatch(f, part, f"size mismatch: the server sends {total:,} bytes, the listing says {f.size:,}")
        if f.size is None:
            f.size = total
        written = 0
        with open(part, mode) as out:
            while True:
                block = resp.read1(CHUNK)  # what has arrived (up to CHUNK): a kill loses little
                if not block:
                    break
                out.write(block)
                written += len(block)
                bar.update(len(block))
            out.flush()
            os.fsync(out.fileno())
    finally:
        resp.close()
    got = have + written
    if f.size is not None and got < f.size:
        raise _Dropped()
    if f.size is not None and got > f.size:
        raise _mismatch(f, part, f"size mismatch: received {got:,} bytes, expected {f.size:,}")
    return written


def _fetch_file(f: RemoteFile, dst: Path, bar, timeout: float, retries: int, retry_wait: float,
                known: dict | None = None) -> dict:
    """Fetch one file into place (module docstring); `known`: what fetch.json recorded for it."""
    final = dst / f.path
    part = final.with_name(final.name + PART)
    if final.exists():
        size = final.stat().st_size
        if f.size is not None and size != f.size:
            raise WorkbenchError(f"already exists with {size:,} bytes, the server has {f.size:,}: remove it to fetch "
                                 "it again", final)
        sha = known["sha256"] if known and known.get("size") == size and known.get("sha256") else sha256_file(final)
        if f.sha256 is not None and sha != f.sha256.lower():
            raise WorkbenchError(f"already exists with sha256 {sha}, published {f.sha256}: remove it to fetch it "
                                 "again", final)
        return {"path": f.path, "url": f.url, "size": size, "sha256": sha, "downloaded": 0, "resumed": False}
    final.parent.mkdir(parents=True, exist_ok=True)
    resumed = part.exists() and part.stat().st_size > 0
    attempt, written = 0, 0
    while True:
        try:
            written += _download(f, part, bar, timeout)
            break
        except (_Dropped, http.client.HTTPException, ConnectionError, TimeoutError, urllib.error.URLError) as exc:
            attempt += 1
            if attempt > retries:
                got = part.stat().st_size if part.exists() else 0
                reason = "the connection dropped" if isinstance(exc, _Dropped) else f"{type(exc).__name__}: {exc}"
                of = f"{f.size:,}" if f.size is not None else "?"
                raise IncompleteError(f"{reason} after {got:,} of {of} bytes ({retries} retries); "
                                      f"{part.name} is kept: run the same fetch again to resume", f.url) from None
            time.sleep(min(retry_wait * 2 ** (attempt - 1), 30.0))
    if not part.exists():  # an empty file: nothing was written
        part.touch()
    sha = sha256_file(part)
    if f.sha256 is not None and sha != f.sha256.lower():
        raise _mismatch(f, part, f"sha256 mismatch: got {sha}, published {f.sha256}")
    os.replace(part, final)
    return {"path": f.path, "url": f.url, "size": final.stat().st_size, "sha256": sha, "downloaded": written,
            "resumed": resumed}


# -- the destination --------------------------------------------------------------------------------
def _read_manifest(dst: Path) -> dict | None:
    path = dst / MANIFEST
    if not path.is_file():
        return None
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise WorkbenchError("unreadable fetch manifest: remove it (or the folder) to fetch again", path) from None
    if not isinstance(m, dict) or m.get("format") != MANIFEST_FORMAT:
        raise WorkbenchError("not a fetch manifest of this workbench", path)
    return m


def _check_dst(dst: Path, source: str) -> dict | None:
    if dst.exists() and not dst.is_dir():
        raise WorkbenchError("the destination is a file, not a folder", dst)
    m = _read_manifest(dst) if dst.exists() else None
    if m is not None and m.get("source") != source:
        raise WorkbenchError(f"holds a fetch of {m.get('source')!r}, not {source!r}: fetch into another folder", dst)
    if m is None and dst.exists() and any(p.name != STAGING for p in dst.iterdir()):
        raise WorkbenchError("the destination is not empty and holds no fetch (fetch.json): use a new or empty folder",
                             dst)
    return m


def _write_manifest(dst: Path, source: str, rel: Release, parts: list[int], files: list[dict], old: dict | None,
                    finished: bool, rows: int | None = None) -> None:
    by_path = {f["path"]: f for f in (old or {}).get("files", [])}
    by_path.update({f["path"]: {k: f[k] for k in ("path", "url", "size", "sha256")} for f in files})
    all_parts = sorted(set((old or {}).get("parts", [])) | set(parts)) if finished else \
        sorted(set((old or {}).get("parts", [])))
    m = {"format": MANIFEST_FORMAT, "source": source, "release": None if rel.name == rel.base_url else rel.name,
         "base_url": rel.base_url, "layout": rel.layout, "licence": rel.licence or None,
         "parts": all_parts, "files": sorted(by_path.values(), key=lambda f: f["path"]),
         "bytes": sum(int(f["size"] or 0) for f in by_path.values()), "rows": rows,
         "started": (old or {}).get("started") or datetime.now(timezone.utc).isoformat(timespec="seconds"),
         "finished": datetime.now(timezone.utc).isoformat(timespec="seconds") if finished else None}
    write_text_atomic(dst / MANIFEST, json.dumps(m, indent=1) + "\n")


# -- the call ---------------------------------------------------------------------------------------
def fetch_release(source, dst, parts=None, *, progress=False, retries: int = 5, retry_wait: float = 0.5,
                  timeout: float = 60.0) -> FetchResult:
    """Download parts of `source` into `dst` (module docstring) and open the result as a collection.

    source: a release name (:data:`workbench.io.releases.RELEASES`), a :class:`Release`, or an
    ``http(s)://`` base URL in the clip-retrieval layout. parts: ``"A-B"`` (inclusive), ``N``, or
    None for every part (a URL's parts are counted by probing ``img_emb_<i>.npy``). progress: the
    protocol of :mod:`workbench.io.progress` (a byte bar). Bad input, a missing part, a size or hash
    mismatch raise :class:`WorkbenchError` naming the URL; a connection that keeps dropping raises
    :class:`IncompleteError` (run again to resume)."""
    from workbench.io.collection import open_collection

    rel, name = _source(source)
    dst = Path(dst)
    old = _check_dst(dst, name)  # before any request: a wrong folder is refused at once
    rel, chosen, files = plan(rel, parts, timeout=timeout)
    dst.mkdir(parents=True, exist_ok=True)
    with lock_destination(dst, f"fetch {name}"):  # a second fetch into DST is refused while this one runs
        old = _check_dst(dst, name)  # again, under the lock
        _write_manifest(dst, name, rel, chosen, [], old, finished=False)
        old = _read_manifest(dst)
        recorded = {r.get("path"): r for r in old.get("files", []) if isinstance(r, dict)}
        have = sum(_size_on_disk(dst, f) for f in files)
        total = sum(f.size or 0 for f in files)
        bar = progress_bar(progress, max(total, have), f"fetch {name if len(name) < 30 else 'url'}", unit="B",
                           initial=have, unit_scale=True)
        done: list[dict] = []
        try:
            for f in files:
                done.append(_fetch_file(f, dst, bar, timeout, retries, retry_wait, recorded.get(f.path)))
        finally:
            bar.close()
            if done and len(done) < len(files):  # what finished is recorded; the rest resumes next time
                _write_manifest(dst, name, rel, [], done, old, finished=False)
        rows = len(open_collection(dst))
        _write_manifest(dst, name, rel, chosen, done, old, finished=True, rows=rows)
    out = [{k: d[k] for k in ("path", "url", "size", "sha256")} for d in done]
    return FetchResult(name, dst, chosen, out, sum(d["size"] for d in done), rows,
                       downloaded=sum(d["downloaded"] for d in done), resumed=[d["path"] for d in done if d["resumed"]])


def _size_on_disk(dst: Path, f: RemoteFile) -> int:
    final = dst / f.path
    if final.exists():
        return final.stat().st_size
    part = final.with_name(final.name + PART)
    return part.stat().st_size if part.exists() else 0
