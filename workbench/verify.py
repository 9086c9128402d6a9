"""Re-checking a written collection against its ``manifest.json``: every byte, every row count."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from .errors import ManifestError
from .npyfile import read_npy
from .writer import MANIFEST, MANIFEST_FORMAT, STAGING, sha256_file

DATA_DIRS = ("img_emb", "text_emb", "metadata", "webdataset", "img2dataset", "datacomp", "failed")


@dataclass
class VerifyReport:
    path: Path
    files_checked: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def load_manifest(folder: str | Path) -> dict:
    path = Path(folder) / MANIFEST
    if not path.exists():
        raise ManifestError("no manifest.json: not a finished workbench output (or never written by one)", Path(folder))
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(f"manifest is not valid JSON ({exc})", path) from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT or not isinstance(manifest.get("files"), list):
        raise ManifestError(f"not a workbench manifest (format should be {MANIFEST_FORMAT!r})", path)
    return manifest


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
    shard_rows = sum(int(s.get("rows", 0)) for s in manifest.get("shards", []))
    laion = "outputs" not in manifest or "laion" in (manifest.get("outputs") or {}) or manifest.get("shards")
    if laion and shard_rows != manifest.get("rows"):
        report.problems.append(f"{folder / MANIFEST}: shards hold {shard_rows} rows, manifest says {manifest.get('rows')}")
    for d in DATA_DIRS:
        sub = folder / d
        if sub.is_dir():
            for p in sorted(sub.iterdir()):
                if f"{d}/{p.name}" not in listed:
                    report.problems.append(f"{p}: not in the manifest (an extra file would change the collection)")
    if (folder / STAGING).exists():
        report.problems.append(f"{folder / STAGING}: leftovers of an unfinished write")
    return report
