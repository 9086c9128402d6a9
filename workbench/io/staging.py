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

One writer per destination: :func:`locked_write` (what export and embed run inside) holds an
exclusive ``flock`` on ``DST/.staging/lock`` for the whole write. A second run into the same DST is
refused at once, naming the holder's pid; the kernel releases the lock when the holder's process
ends (even by SIGKILL), so a killed run is resumed by simply running it again. A refusal before
any part is published (bad options, not enough free space) leaves DST as it was.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Callable

from workbench.errors import IncompleteError, WriteError
from workbench.io.writer import MANIFEST, STAGING, _fsync_dir, check_not_inside, sha256_file

PLAN = "plan.json"
LOCK = "lock"  # DST/.staging/lock: flock-ed by the one run writing DST


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
        _refuse_if_locked(dst)
        names = {p.name for p in dst.iterdir()}
        if MANIFEST in names:
            state = "finished"
        elif (dst / STAGING / PLAN).is_file():
            state = "unfinished"
        elif names - {STAGING}:
            raise WriteError(f"destination is not empty ({', '.join(sorted(names - {STAGING})[:5])}); "
                             "choose an empty or new folder", dst)
    made, p = [], dst  # the folders mkdir will create, deepest first
    while not (p.exists() or p.is_symlink()) and p != p.parent:
        made.append(p)
        p = p.parent
    try:
        dst.mkdir(parents=True, exist_ok=True)
        probe = dst / f".probe-{os.getpid()}"
        probe.write_bytes(b"x")
        probe.unlink()
        if keep is False:
            for d in made:  # dst and any parents this check created
                d.rmdir()
    except OSError as exc:
        raise WriteError(f"destination is not writable ({exc.strerror or exc})", dst) from None
    return state


# -- one writer per destination ---------------------------------------------------------------------
_HELD: set[str] = set()  # destinations this process holds the lock of (its own check skips the probe)


def _lock_key(dst: Path) -> str:
    return str(dst.resolve())


def _busy(dst: Path, path: Path) -> WriteError:
    """The refusal naming the holder (the lock file holds "PID WHAT", written once it was locked)."""
    try:
        pid, _, what = path.read_text().strip().partition(" ")
    except OSError:
        pid, what = "", ""
    who = f"another {what or 'write'}" + (f" (process {pid})" if pid.isdigit() else "")
    return WriteError(f"{who} is writing into this destination now (it holds {STAGING}/{LOCK}); "
                      "wait for it to finish or stop it, then run this command again", dst)


def _refuse_if_locked(dst: Path) -> None:
    """Refuse at once when another process holds the destination's lock (creates nothing)."""
    path = dst / STAGING / LOCK
    if _lock_key(dst) in _HELD or not path.is_file():
        return
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise _busy(dst, path) from None
    finally:
        os.close(fd)  # closing drops the probe's lock, if it got one


class DestinationLock:
    """An exclusive ``flock`` on ``DST/.staging/lock``, held for a whole write (export, embedding run).

    A second writer into the same destination is refused at once (it never waits). The kernel drops
    the lock when the holder's process ends, however it ends, so a killed run leaves no stale lock:
    the next run simply resumes. The file holds the holder's pid and what it writes (for the refusal)."""

    def __init__(self, dst: Path, fd: int, path: Path):
        self.dst, self.fd, self.path = dst, fd, path

    def release(self) -> None:
        if self.fd is None:
            return
        try:  # remove the file while still holding it, when it is still ours (a finished write removed .staging)
            st = os.fstat(self.fd)
            cur = os.stat(self.path)
            if (cur.st_ino, cur.st_dev) == (st.st_ino, st.st_dev):
                os.unlink(self.path)
                try:
                    os.rmdir(self.path.parent)  # .staging, when nothing else is left in it
                except OSError:
                    pass
        except OSError:
            pass
        finally:
            os.close(self.fd)
            self.fd = None
            _HELD.discard(_lock_key(self.dst))

    def __enter__(self) -> "DestinationLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def lock_destination(dst: str | Path, what: str = "write") -> DestinationLock:
    """Take the destination's lock (creating ``DST/.staging/lock``) or refuse: another writer holds it."""
    import time

    dst = Path(dst)
    path = dst / STAGING / LOCK
    busy = 0
    for _ in range(100):
        try:
            path.parent.mkdir(exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        except FileNotFoundError:  # a finishing writer removed .staging between the two calls
            if not dst.is_dir():
                raise WriteError("destination folder does not exist", dst) from None
            continue
        except OSError as exc:
            raise WriteError(f"cannot lock the destination ({exc.strerror or exc})", dst) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise WriteError(f"cannot lock the destination ({exc.strerror or exc})", dst) from None
            busy += 1
            if busy >= 5:  # held for ~0.1 s: a writer (another check's probe holds it for microseconds)
                raise _busy(dst, path) from None
            time.sleep(0.02)
            continue
        try:  # the file locked must still be the one at `path` (a finishing writer unlinks it)
            same = (os.stat(path).st_ino, os.stat(path).st_dev) == (os.fstat(fd).st_ino, os.fstat(fd).st_dev)
        except OSError:
            same = False
        if not same:
            os.close(fd)
            continue
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {what}\n".encode())
        _HELD.add(_lock_key(dst))
        return DestinationLock(dst, fd, path)
    raise WriteError("cannot lock the destination (its .staging folder keeps changing)", dst)


def locked_write(dst: str | Path, sources, what: str, run: Callable[[], object]):
    """Run a whole write into `dst` (``run()``, which checks the destination and plans itself) holding
    the destination's lock. A refusal before any part is published (a bad option, a full disk) leaves
    the destination as it was: the folders this call created are removed again."""
    dst = Path(dst)
    made, p = [], dst  # the folders check_destination will create, deepest first
    while not (p.exists() or p.is_symlink()) and p != p.parent:
        made.append(p)
        p = p.parent
    check_destination(dst, list(sources))  # refusals that need no lock; creates dst
    cleared = False
    try:
        with lock_destination(dst, what):
            state = check_destination(dst, list(sources))  # again, under the lock: another run may have finished
            try:
                return run()
            except BaseException as exc:
                if state == "new" and not isinstance(exc, IncompleteError):
                    cleared = _clear_new(dst)
                raise
    finally:
        if cleared:  # the lock's release removed .staging; now the folders this call made
            for d in made:
                try:
                    d.rmdir()
                except OSError:
                    break


def _clear_new(dst: Path) -> bool:
    """After a refused new write: remove what it put in .staging (the lock stays until released),
    unless a part was already published. True when cleared."""
    try:
        if {p.name for p in dst.iterdir()} - {STAGING} or any((dst / STAGING / "done").glob("*.json")):
            return False
        for p in (dst / STAGING).iterdir():
            if p.name != LOCK:
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        return True
    except OSError:
        return False


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
        if staging.exists():  # leftovers without a plan; the lock file (held by this run) stays
            for p in staging.iterdir():
                if p.name != LOCK:
                    shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        staging.mkdir(parents=True, exist_ok=True)
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
        try:
            start = self.f.tell()
            while mv:
                k = self.f.write(mv)
                mv = mv[k:]
        except OSError as exc:  # name the file (a write error carries none): the caller reports it
            raise OSError(exc.errno, exc.strerror or str(exc), str(self.path)) from None
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
        at = _failed_file(exc, tmp, dst)
        raise WriteError(f"writing {what or task_id} failed{f' at {at}' if at else ''}: {exc.strerror or exc}",
                         dst) from None  # the caller says which parts are kept and how to resume
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    record = {"task": task_id, **(extra or {}), "files": [_entry(e) for e in files],
              "stats": {k: v for e in files for k, v in e.get("stats", {}).items()},
              "seconds": round(time.perf_counter() - t0, 3), "pid": os.getpid()}
    _write_json_atomic(dst / STAGING / "done" / f"{task_id}.json", record)
    return record


def write_parquet(table, path: Path, **kw) -> None:
    """``pq.write_table`` whose write errors name the file (pyarrow's do not, and it removes the
    partial file, so a failed part could not tell which file the disk filled up on)."""
    import pyarrow.parquet as pq

    try:
        pq.write_table(table, path, **kw)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror if exc.errno else str(exc), str(path)) from None


def _failed_file(exc: OSError, tmp: Path, dst: Path) -> str | None:
    """The file a failed write was writing, as its final path relative to DST: the error's own file
    name when it has one, else the most recently written file of the part (pyarrow's errors name none)."""
    name = exc.filename if isinstance(exc.filename, str) else None
    if name is None:
        newest = None
        for p in tmp.rglob("*"):
            try:
                st = p.lstat()
            except OSError:
                continue
            if p.is_file() and (newest is None or st.st_mtime_ns >= newest[0]):
                newest = (st.st_mtime_ns, p)
        name = None if newest is None else str(newest[1])
    if name is None:
        return None
    for root in (tmp, dst):
        try:
            return Path(name).relative_to(root).as_posix()
        except ValueError:
            continue
    return name


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
