"""Writing a folder of outputs so that nothing half-written ever sits under a final name, and a
stopped run can resume: the protocol shared by exports and embedding runs.

    state = check_destination(dst, sources)            # new / unfinished / finished, or refused
    digest, done = begin_plan(dst, state, plan)         # records or checks .staging/plan.json
    rec = journal(dst, task_id) or staged_task(dst, task_id, write)   # one part: tmp -> final, journalled
    write_manifest(dst, manifest)                       # last; .staging goes

A part's files are written under ``DST/.staging/tmp/<task>/``, fsynced, hashed, moved to their final
names with ``os.replace``, and the part is recorded in ``DST/.staging/done/<task>.json``. A killed
run leaves finished parts under final names, its plan and journal, and no ``manifest.json``; the
same run again redoes only what is not journalled.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Callable

from .errors import WriteError
from .writer import MANIFEST, STAGING, _fsync_dir, check_not_inside, sha256_file

PLAN = "plan.json"


def check_destination(dst: str | Path, sources: list[Path] = (), keep: bool = True) -> str:
    """Fail early on a destination that can never be written: inside the source, not a folder,
    unwritable, or holding anything but an earlier run of this writer. Returns ``"new"``,
    ``"unfinished"`` (a plan to resume) or ``"finished"`` (a manifest is there). ``keep=False``
    removes the folder again when the check created it."""
    dst = Path(dst)
    check_not_inside(dst, list(sources))
    if dst.exists() and not dst.is_dir():
        raise WriteError("destination exists and is not a folder", dst)
    state = "new"
    if dst.is_dir():
        names = {p.name for p in dst.iterdir()}
        if MANIFEST in names:
            state = "finished"
        elif (dst / STAGING / PLAN).is_file():
            state = "unfinished"
        elif names - {STAGING}:
            raise WriteError(f"destination is not empty ({', '.join(sorted(names - {STAGING})[:5])}); "
                             "choose an empty or new folder", dst)
    created = not dst.exists()
    try:
        dst.mkdir(parents=True, exist_ok=True)
        probe = dst / f".probe-{os.getpid()}"
        probe.write_bytes(b"x")
        probe.unlink()
        if created and keep is False:
            dst.rmdir()
    except OSError as exc:
        raise WriteError(f"destination is not writable ({exc.strerror or exc})", dst) from None
    return state


def begin_plan(dst: Path, state: str, plan: dict, what: str = "export") -> tuple[str, dict | None]:
    """Record (or check) the plan of a write into `dst` in the state :func:`check_destination` found.

    Returns the plan's digest and, when `dst` already holds the finished write of this plan, its
    manifest (nothing to do). A finished or unfinished write of another plan is refused; a new
    one gets ``.staging/plan.json``. Leftover temporary files of a killed run are removed."""
    digest = hashlib.sha256(json.dumps(plan, sort_keys=True, default=str).encode()).hexdigest()
    if state == "finished":
        try:
            old = json.loads((dst / MANIFEST).read_text())
        except (OSError, ValueError):
            old = {}
        if old.get("plan") == digest:
            return digest, old
        raise WriteError(f"destination holds a finished {what} of another selection or options; "
                         "choose an empty or new folder", dst)
    staging = dst / STAGING
    if state == "unfinished":
        try:
            old_plan = json.loads((staging / PLAN).read_text())
        except (OSError, ValueError):
            old_plan = {}
        if old_plan.get("digest") != digest:
            changed = sorted(k for k in plan if old_plan.get("plan", {}).get(k) != plan[k])
            raise WriteError(f"destination holds an unfinished {what} of a different plan "
                             f"(differs in: {', '.join(changed) or 'everything'}); remove it or choose another folder", dst)
    else:
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(parents=True)
        _write_json_atomic(staging / PLAN, {"digest": digest, "plan": plan})
    shutil.rmtree(staging / "tmp", ignore_errors=True)
    return digest, None


def write_manifest(dst: Path, manifest: dict) -> dict:
    """``manifest.json`` last (written, fsynced, renamed), then the staging folder goes."""
    staging = dst / STAGING
    staging.mkdir(parents=True, exist_ok=True)
    tmp = staging / MANIFEST
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=1, default=str)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, dst / MANIFEST)
    _fsync_dir(dst)
    shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _libc_sync_file_range():
    try:
        import ctypes
        import ctypes.util

        fn = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).sync_file_range
        fn.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
        return fn
    except (OSError, AttributeError):
        return None


_SYNC_FILE_RANGE = _libc_sync_file_range() if os.name == "posix" else None


def _start_writeback(fd: int, offset: int, nbytes: int) -> None:
    """Ask the kernel to start writing these bytes to disk now (Linux ``sync_file_range``, no wait),
    so the disk works while the next block is gathered and the final fsync has little left to do."""
    if _SYNC_FILE_RANGE is not None and nbytes > 0:
        _SYNC_FILE_RANGE(fd, offset, nbytes, 2)  # SYNC_FILE_RANGE_WRITE; a failure only loses the head start


class _HashingFile:
    """A file written in order and hashed as it is written (no second read of what was written).

    Hashing and writing run in one background thread while the caller gathers the next block
    (numpy's gather, hashlib and write() all release the GIL): at most two blocks are in flight."""

    def __init__(self, path: Path):
        from concurrent.futures import ThreadPoolExecutor

        self.path = path
        self.f = open(path, "wb", buffering=0)
        self.h = hashlib.sha256()
        self.bytes = 0
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="hash-write")
        self._pending: list = []

    def _put(self, mv: memoryview) -> None:
        self.h.update(mv)
        start = self.f.tell()
        while mv:
            k = self.f.write(mv)
            mv = mv[k:]
        _start_writeback(self.f.fileno(), start, self.f.tell() - start)

    def write(self, data) -> None:
        mv = memoryview(data).cast("B")
        self.bytes += len(mv)
        if len(self._pending) >= 2:
            self._pending.pop(0).result()
        self._pending.append(self._pool.submit(self._put, mv))

    def _drain(self) -> None:
        try:
            for fut in self._pending:
                fut.result()
        finally:
            self._pending = []
            self._pool.shutdown(wait=True)

    def close(self) -> dict:
        try:
            self._drain()
            os.fsync(self.f.fileno())
        finally:
            self.f.close()
        return {"bytes": self.bytes, "sha256": self.h.hexdigest()}

    def abort(self) -> None:
        try:
            self._drain()
        except OSError:
            pass
        finally:
            self.f.close()


def staged_task(dst, task_id: str, write: Callable[[Path], list[dict]], extra: dict | None = None,
                what: str | None = None) -> dict:
    """The write protocol every part follows: `write(tmp)` fills ``DST/.staging/tmp/<task_id>/`` and
    returns its files (``path`` relative to DST, optional ``rows``/``sha256``/``stats``); they are
    fsynced, hashed, moved to their final names, and the task is journalled in
    ``.staging/done/<task_id>.json`` (what a rerun finds with :func:`journal`)."""
    import time

    t0 = time.perf_counter()
    dst = Path(dst)
    tmp = dst / STAGING / "tmp" / task_id
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        files = write(tmp)
        for e in files:
            staged = tmp / e["path"]
            if "sha256" not in e:
                with open(staged, "rb+") as f:
                    os.fsync(f.fileno())
                e["bytes"] = staged.stat().st_size
                e["sha256"] = sha256_file(staged)
        for e in files:
            final = dst / e["path"]
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp / e["path"], final)
            _fsync_dir(final.parent)
    except OSError as exc:
        raise WriteError(f"writing {what or task_id} failed: {exc.strerror or exc}; "
                         "finished parts are kept: run the same command again to resume", dst) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    record = {"task": task_id, **(extra or {}), "files": [_entry(e) for e in files],
              "stats": {k: v for e in files for k, v in e.get("stats", {}).items()},
              "seconds": round(time.perf_counter() - t0, 3), "pid": os.getpid()}
    _write_json_atomic(dst / STAGING / "done" / f"{task_id}.json", record)
    return record


def _entry(e: dict) -> dict:
    out = {"path": e["path"], "bytes": e["bytes"], "sha256": e["sha256"]}
    if "rows" in e:
        out["rows"] = e["rows"]
    if "samples" in e:
        out["samples"] = e["samples"]
    return out


def _write_json_atomic(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def journal(dst: Path, task_id: str) -> dict | None:
    """The record of a part finished by an earlier run, when all its files are still there intact."""
    p = dst / STAGING / "done" / f"{task_id}.json"
    try:
        rec = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    for e in rec.get("files", []):
        f = dst / e["path"]
        if not f.is_file() or f.stat().st_size != e["bytes"]:
            return None
    return rec
