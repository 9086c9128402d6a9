"""Re-checking a written collection against its ``manifest.json``: every byte, every row count."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import pyarrow.parquet as pq

from workbench.errors import ManifestError
from workbench.io.npyfile import read_npy
from workbench.io.staging import LOCK
from workbench.io.writer import MANIFEST, MANIFEST_FORMAT, STAGING, sha256_file

DATA_DIRS = ("img_emb", "text_emb", "metadata", "webdataset", "img2dataset", "datacomp", "failed")
NOT_WRITTEN = (".workbench",)  # score caches and indexes of the collection (workbench.scoring.scorecache, faissindex)


@dataclass
class VerifyReport:
    path: Path
    files_checked: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def load_manifest(folder: str | Path) -> dict:
    """The manifest of `folder`, checked for shape (every entry a path, a byte count and a sha256;
    counts are integers) and for paths that stay inside `folder`, before any listed file is read.
    Anything else is a :class:`ManifestError` naming the manifest and the bad entry."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.exists() and not path.is_symlink():
        raise ManifestError("no manifest.json: not a finished workbench output (or never written by one)", folder)
    _inside(folder, MANIFEST, path, "the manifest")  # a manifest.json linked from elsewhere is not read
    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise ManifestError(f"manifest is not valid JSON ({exc})", path) from None
    except RecursionError:
        raise ManifestError("manifest is not valid JSON (nested too deep)", path) from None
    except OSError as exc:
        raise ManifestError(f"cannot read the manifest ({exc.strerror or exc})", path) from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT or not isinstance(manifest.get("files"), list):
        raise ManifestError(f"not a workbench manifest (format should be {MANIFEST_FORMAT!r})", path)
    _check_shape(manifest, path)
    for key in ("files", "extra_files"):
        for i, e in enumerate(manifest.get(key, [])):
            _inside(folder, e["path"], path, f"{key}[{i}]")
    return manifest


_SHA256 = re.compile(r"[0-9a-f]{64}")


def _is_count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _check_shape(manifest: dict, path: Path) -> None:
    """Types of what verify reads: file entries (path, bytes, sha256, rows), shards' rows, rows."""
    def bad(msg):
        return ManifestError(msg, path)

    if not isinstance(manifest.get("extra_files", []), list):
        raise bad(f"`extra_files` must be a list, got {type(manifest['extra_files']).__name__}")
    for key in ("files", "extra_files"):
        for i, e in enumerate(manifest.get(key, [])):
            where = f"{key}[{i}]"
            if not isinstance(e, dict):
                raise bad(f"{where} must be a mapping with path, bytes and sha256, got {type(e).__name__}")
            for k in ("path", "bytes", "sha256"):
                if k not in e:
                    raise bad(f"{where} has no {k!r}")
            if not isinstance(e["path"], str) or not e["path"]:
                raise bad(f"{where}: path must be a non-empty string, got {e['path']!r:.80}")
            if not _is_count(e["bytes"]):
                raise bad(f"{where} ({e['path']!r:.200}): bytes must be a non-negative integer, got {e['bytes']!r:.80}")
            if not isinstance(e["sha256"], str) or not _SHA256.fullmatch(e["sha256"]):
                raise bad(f"{where} ({e['path']!r:.200}): sha256 must be 64 hex digits, got {e['sha256']!r:.80}")
            for k in ("rows", "samples"):
                if k in e and not _is_count(e[k]):
                    raise bad(f"{where} ({e['path']!r:.200}): {k} must be a non-negative integer, got {e[k]!r:.80}")
    shards = manifest.get("shards", [])
    if shards is not None and not isinstance(shards, list):
        raise bad(f"`shards` must be a list, got {type(shards).__name__}")
    for i, s in enumerate(shards or []):
        if not isinstance(s, dict) or not _is_count(s.get("rows", 0)):
            raise bad(f"shards[{i}] must be a mapping with an integer rows, got {s!r:.80}")
    if manifest.get("rows") is not None and not _is_count(manifest["rows"]):
        raise bad(f"rows must be a non-negative integer, got {manifest['rows']!r:.80}")
    if manifest.get("outputs") is not None and not isinstance(manifest["outputs"], dict):
        raise bad(f"`outputs` must be a mapping, got {type(manifest['outputs']).__name__}")


def _inside(folder: Path, rel: str, manifest: Path, where: str) -> Path:
    """`folder / rel`, refused unless it is a relative path without ``..`` that stays inside the
    folder once symlinks are followed (nothing outside the folder is ever opened)."""
    p = PurePosixPath(rel)
    if "\0" in rel or "\\" in rel or p.is_absolute() or ".." in p.parts or not p.parts or p.parts == (".",):
        raise ManifestError(f"{where} names {rel!r:.200}: a path outside the folder (or not a relative file path); "
                            "refusing to read it", manifest)
    try:
        root = folder.resolve()
        real = (folder / rel).resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop
        raise ManifestError(f"{where} names {rel!r:.200}, which cannot be resolved ({exc})", manifest) from None
    if root not in real.parents:
        raise ManifestError(f"{where} names {rel!r:.200}, which leads outside the folder through a symlink "
                            f"(to {real}); refusing to read it", manifest)
    return folder / rel


def _rows(path: Path) -> int:
    if path.suffix == ".npy":
        if path.parent.name == "datacomp":  # a 1-d array of (u8, u8) uids
            return int(np.load(path, mmap_mode="r", allow_pickle=False).shape[0])
        return read_npy(path).rows
    return pq.read_metadata(path).num_rows


def verify(folder: str | Path) -> VerifyReport:
    """Check every file listed in the manifest (size, sha256, rows) and that no shard file is unlisted."""
    folder = Path(folder)
    manifest = load_manifest(folder)
    report = VerifyReport(folder)
    listed = set()
    for entry in manifest["files"] + manifest.get("extra_files", []):
        rel = entry.get("path")
        if not isinstance(rel, str):
            report.problems.append(f"{folder / MANIFEST}: a file entry has no path")
            continue
        listed.add(rel)
        path = folder / rel
        report.files_checked += 1
        if not path.is_file():
            report.problems.append(f"{path}: missing")
            continue
        size = path.stat().st_size
        if size != entry.get("bytes"):
            report.problems.append(f"{path}: {size} bytes, manifest says {entry.get('bytes')}")
            continue
        if sha256_file(path) != entry.get("sha256"):
            report.problems.append(f"{path}: sha256 differs from the manifest (the file changed)")
            continue
        if "rows" in entry:
            try:
                rows = _rows(path)
            except Exception as exc:  # noqa: BLE001 - an unreadable file is a problem to report, not a crash
                report.problems.append(f"{path}: unreadable ({exc})")
                continue
            if rows != entry["rows"]:
                report.problems.append(f"{path}: {rows} rows, manifest says {entry['rows']}")
    shard_rows = sum(int(s.get("rows", 0)) for s in manifest.get("shards") or [])
    laion = "outputs" not in manifest or "laion" in (manifest.get("outputs") or {}) or manifest.get("shards")
    if laion and shard_rows != manifest.get("rows"):
        report.problems.append(f"{folder / MANIFEST}: shards hold {shard_rows} rows, manifest says {manifest.get('rows')}")
    for p in _unlisted(folder, listed):
        report.problems.append(f"{p}: not in the manifest (an extra file would change the collection)")
    staging = folder / STAGING
    if staging.exists() and not (staging.is_dir() and {q.name for q in staging.iterdir()} <= {LOCK}):
        report.problems.append(f"{staging}: leftovers of an unfinished write")
    return report


def _unlisted(folder: Path, listed: set[str]) -> list[Path]:
    """Every file (or link) under `folder`, at any depth and in the root too, that the manifest does
    not list; left out: ``manifest.json``, the write protocol's ``.staging/`` (judged apart) and
    :data:`NOT_WRITTEN` (what other commands keep beside a collection, not part of it)."""
    import os

    out = []
    for top, dirs, files in os.walk(folder):
        rel_top = Path(top).relative_to(folder)
        if rel_top == Path("."):
            dirs[:] = [d for d in dirs if d not in (STAGING, *NOT_WRITTEN)]
            files = [f for f in files if f != MANIFEST]
        for name in sorted(files) + sorted(d for d in dirs if Path(top, d).is_symlink()):
            if (rel_top / name).as_posix() not in listed:
                out.append(Path(top) / name)
        dirs[:] = sorted(d for d in dirs if not Path(top, d).is_symlink())
    return out
