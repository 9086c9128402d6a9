"""Writing the selected rows of a collection: formats, parallel per-part tasks, resume, manifest.

    from workbench.export.exporter import export
    result = export(collection, selection.mask, "out/", formats=("laion", "webdataset"),
                    engine=make_engine("local", workers=2), parameters={"recipe": ...})
    result.manifest          # what manifest.json says

The kept rows, in source order, are cut into parts (``rows_per_shard`` rows for the LAION layout
and the img2dataset lists, ``samples_per_tar`` for webdataset tars). Each part is one task: it
reads its rows from the source shards and writes its files by the protocol of
:mod:`workbench.io.staging` (staged, fsynced, renamed, journalled in ``DST/.staging/done/``). A part is a pure function of the source, the selection and the
options, so the outputs are byte-identical whatever the engine or the number of workers.

A run that stops part-way (killed, a full disk) leaves finished parts under their final names, its
plan and journal under ``.staging/``, and no ``manifest.json``; the same command run again redoes
only the unfinished parts. ``manifest.json`` is written last.

Formats (see :data:`FORMATS`): ``laion`` (img_emb/, text_emb/, metadata/: the clip-retrieval layout),
``webdataset`` (``webdataset/<n:05d>.tar`` with jpg/txt/json per sample and a parquet beside each
tar, as img2dataset writes them), ``img2dataset`` (``img2dataset/<n:05d>.parquet``: url, caption,
row — an input list for img2dataset), ``datacomp`` (``datacomp/uids.npy``: the sorted 128-bit uids
as ``np.dtype("u8,u8")``, DataComp's subset file). Every export also gets
``sidecars/removed.parquet`` when the caller passes it as an extra (the CLI and the notebook do: each
removed row and its reason); sidecars sit in ``sidecars/``, which layout detection never reads.
"""
from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from workbench.errors import ConfigError, IncompleteError, ShardError, WorkbenchError, WriteError
from workbench.io.staging import begin_plan, check_destination, journal, locked_write, staged_task, write_manifest  # noqa: F401
from workbench.export.formats import Part, cut_parts, run_part
from workbench.io.progress import progress_bar
from workbench.io.writer import MANIFEST_FORMAT, MANIFEST_VERSION, shard_name

FORMATS = ("laion", "webdataset", "img2dataset", "datacomp")
OUTPUT_DIRS = ("img_emb", "text_emb", "metadata", "webdataset", "img2dataset", "datacomp")
# Sidecar files (the removed rows and their reasons, ...) live in their own folder, never beside the
# data: layout detection (workbench.io.layouts) never reads this folder, so an export never opens as a
# collection of its removed rows. `extras` paths are placed inside it.
SIDECARS = "sidecars"
REMOVED_ROWS = f"{SIDECARS}/removed.parquet"  # every source row not written, and why (row, reason)


def sidecar_path(name: str, dst=None) -> str:
    """Where a sidecar named `name` goes, relative to the export's root: inside :data:`SIDECARS`."""
    rel = Path(name).as_posix()
    parts = Path(rel).parts
    if not parts or rel.startswith("/") or ".." in parts:
        raise WriteError(f"invalid sidecar path {name!r}", dst)
    return rel if parts[0] == SIDECARS else f"{SIDECARS}/{rel}"


@dataclass
class ExportResult:
    manifest: dict
    run: dict = field(default_factory=dict)  # tasks done now / resumed, seconds; not in the manifest


def free_bytes(path: Path) -> int:
    return shutil.disk_usage(path).free


# -- planning --------------------------------------------------------------------------------------
def _unpack_selection(collection, rows, counts):
    """`rows` may be a :class:`~workbench.curation.recipe.Selection`: its kept rows, or, when it carries
    ``repeats`` (from sampling), those as counts. Returns (rows, counts)."""
    if not (hasattr(rows, "kept_rows") and hasattr(rows, "repeats")):
        return rows, counts
    if counts is not None:
        raise WriteError("give a selection or counts, not both")
    if rows.repeats is None:
        return rows.kept_rows(), None
    sel = rows
    if len(sel.rows) and (sel.rows.min() < 0 or sel.rows.max() >= len(collection)):
        raise WriteError(f"the selection's rows are not rows of this collection (0..{len(collection) - 1})")
    full = np.zeros(len(collection), np.int64)
    full[sel.rows] = sel.repeats
    return None, full


def _kept_per_shard(collection, rows, counts=None) -> list[np.ndarray]:
    """Per source shard, the local rows to write in order (with `counts`, each row repeated)."""

    if counts is not None:
        c = np.asarray(counts)
        if rows is not None:
            raise WriteError("give rows or counts, not both")
        if c.shape != (len(collection),) or c.dtype.kind not in "iu":
            raise WriteError(f"counts must be one integer per row ({len(collection)}), got {c.dtype} {c.shape}")
        if len(c) and c.min() < 0:
            raise WriteError(f"a count is negative (row {int(np.argmin(c))})")
        out = []
        for i in range(len(collection.shards)):
            seg = c[collection.offsets[i]:collection.offsets[i + 1]]
            local = np.nonzero(seg)[0]
            out.append(np.repeat(local, seg[local]).astype(np.int64))
        return out
    selected = as_rows(collection, rows)
    bounds = np.searchsorted(selected, collection.offsets)
    return [selected[bounds[i]:bounds[i + 1]] - collection.offsets[i] for i in range(len(collection.shards))]


def _selection_digest(kept: list[np.ndarray]) -> str:
    h = hashlib.sha256()
    for i, local in enumerate(kept):
        h.update(f"|{i}:{len(local)}|".encode())
        h.update(np.ascontiguousarray(local, dtype="<i8").tobytes())
    return h.hexdigest()


# -- the export ----------------------------------------------------------------------------------
def _options(collection, kept: list[np.ndarray], padding: int, samples_per_tar: int) -> dict:
    """What every part needs to know about the whole export (the same for every part)."""
    with_schema = [i for i, s in enumerate(collection.shards) if s.schema is not None]
    first = next((i for i in with_schema if len(kept[i])), with_schema[0] if with_schema else None)
    schema = None if first is None else collection.shards[first].schema  # the first kept shard's columns
    return {
        "padding": padding,
        "samples_per_tar": samples_per_tar,
        "kinds": {"image": collection.has_embeddings, "text": collection.has_text_embeddings},
        "dim": collection.dim,
        "dtype": _out_dtype(collection.dtype),
        "schema": schema,
    }


def _out_dtype(dtype: str | None) -> str | None:
    """The dtype written for the source's embeddings (``Collection.dtype``: one name, or several joined
    by ``/`` when shards differ): as stored (float16, float32, float64: never narrowed), or, for
    shards of several dtypes, the widest of them (a lossless widening, recorded by
    :func:`dtype_conversion` in the manifest)."""
    if dtype is None:
        return None
    names = dtype.split("/")
    return str(np.result_type(*[np.dtype(n) for n in names])) if len(names) > 1 else names[0]


def dtype_conversion(dtype: str | None) -> dict | None:
    """What the manifest says of the embeddings' dtype when the export changes it (None: as stored)."""
    out = _out_dtype(dtype)
    if out is None or out == dtype:
        return None
    return {"from": dtype.split("/"), "to": out, "lossless": True,
            "why": "the source's shards differ in dtype; one output shard may join rows of several"}


IMAGE_SIZE_SAMPLE = 256


def _image_file_bytes(collection, shard: int, local: np.ndarray) -> float:
    """The bytes of the image files behind `local` rows of a shard (``image_path``), estimated from
    the sizes of up to 256 of them (evenly spread; a missing file counts 0)."""
    from workbench.io.images import image_location

    if "image_path" not in collection.shard_metadata(shard).collect_schema().names():
        return 0.0
    uniq = np.unique(local)
    pick = uniq[np.linspace(0, len(uniq) - 1, min(IMAGE_SIZE_SAMPLE, len(uniq))).astype(np.int64)]
    paths = collection.shard_metadata(shard).select("image_path").collect()["image_path"].to_list()
    sizes = []
    for r in pick.tolist():
        loc = image_location(collection, shard, None, paths[r])
        sizes.append(Path(loc[1]).stat().st_size if loc is not None else 0)
    return float(np.mean(sizes)) * len(local) if sizes else 0.0


def _needed_bytes(collection, kept: list[np.ndarray], formats: tuple[str, ...]) -> int:
    """A generous estimate of what the export writes (for the free-space check before any write)."""
    total = 0
    for i, local in enumerate(kept):
        s = collection.shards[i]
        frac = len(local) / s.rows if s.rows else 0.0
        if "laion" in formats:
            for arr in (s.image, s.text):
                if arr is not None:
                    total += len(local) * arr.dim * np.dtype(_out_dtype(collection.dtype)).itemsize
            if s.metadata is not None:
                total += int(s.metadata.stat().st_size * frac * 1.25)
        if "webdataset" in formats:
            if s.tar is not None:
                total += int(s.tar.stat().st_size * frac * 1.1)
            elif len(local):
                total += int(_image_file_bytes(collection, i, local) * 1.1)
            if s.metadata is not None:
                total += int(s.metadata.stat().st_size * frac * 3)
        if "img2dataset" in formats and s.metadata is not None:
            total += int(s.metadata.stat().st_size * frac)
        if "datacomp" in formats:
            total += 16 * len(local)
    return total


def export(collection, dst: str | Path, rows=None, **options) -> ExportResult:
    """Write the selected `rows` of `collection` into `dst` (options and behaviour: :func:`_export`),
    holding the destination's lock (:func:`workbench.io.staging.locked_write`): a second export or
    embedding run into the same `dst` is refused at once; a refusal before any part is written
    (bad options, not enough free space) leaves `dst` as it was."""
    return locked_write(dst, collection.source_paths, "export",
                        lambda: _export(collection, dst, rows, **options))


def _export(
    collection,
    dst: str | Path,
    rows=None,
    *,
    formats: tuple[str, ...] | list[str] = ("laion",),
    rows_per_shard: int = 1_000_000,
    padding: int = 0,
    samples_per_tar: int = 10_000,
    engine=None,
    parameters: dict | None = None,
    model: dict | None = None,
    extras: dict | None = None,
    progress=False,
    plan_extra: dict | None = None,
    counts=None,
) -> ExportResult:
    """Write the selected `rows` (ids, a mask, or a Selection; None: all) of `collection` into `dst`.

    `counts` (one integer per row, e.g. from Soft Cap Sampling) instead of `rows`: each row is written
    as many times as its count, consecutively, in source order (the datacomp uid list stays a set).

    Resumes an unfinished export of the same plan (source, selection, formats and options) into
    `dst`; refuses a `dst` holding anything else. `extras` maps a file name to a ``write(path)``
    function for sidecar files (e.g. ``removed.parquet``), written into ``DST/sidecars/`` (never
    beside the data, see :data:`SIDECARS`) and listed in the manifest.
    """
    import time

    from workbench.engine import LocalEngine

    t0 = time.perf_counter()
    formats = tuple(dict.fromkeys(formats))
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise WriteError(f"unknown output format(s) {bad} (choose from {', '.join(FORMATS)})", dst)
    if rows_per_shard < 1 or samples_per_tar < 1:
        raise WriteError("rows per shard and samples per tar must be >= 1", dst)
    dst = Path(dst)
    rows, counts = _unpack_selection(collection, rows, counts)
    kept = _kept_per_shard(collection, rows, counts)
    n_kept = int(sum(len(k) for k in kept))
    _check_formats(collection, formats, dst)
    state = check_destination(dst, collection.source_paths)
    if model is None:
        model = collection.model_identity
    params = {"selected_rows": n_kept, **(parameters or {})}
    if counts is not None:
        params["distinct_rows"] = int(sum(len(np.unique(k)) for k in kept))
    plan = {
        "source": collection.fingerprint,
        "skipped_shards": [s["shard"] for s in collection.skipped],
        "selection": _selection_digest(kept),
        "formats": list(formats),
        "rows_per_shard": int(rows_per_shard),
        "padding": int(padding),
        "samples_per_tar": int(samples_per_tar),
        "parameters": params,
        "extras": sorted(extras or {}),
        **(plan_extra or {}),
    }
    digest, finished = begin_plan(dst, state, plan, "export")
    if finished is not None:
        return ExportResult(finished, {"tasks": 0, "resumed": 0, "already_complete": True,
                                       "seconds": round(time.perf_counter() - t0, 3)})

    parts: list[Part] = []
    for fmt in formats:
        if fmt == "datacomp":
            parts += cut_parts(fmt, kept, max(n_kept, 1))
        elif fmt == "webdataset":
            parts += cut_parts(fmt, kept, samples_per_tar)
        else:
            parts += cut_parts(fmt, kept, rows_per_shard)
    records: dict[str, dict] = {}
    todo = []
    for p in parts:
        rec = journal(dst, p.task_id)
        if rec is not None:
            records[p.task_id] = rec
        else:
            todo.append(p)
    resumed = len(records)
    need = _needed_bytes(collection, kept, formats) * (len(todo) / max(len(parts), 1))
    free = free_bytes(dst)
    if need > free:
        raise WriteError(f"not enough free space: the export needs about {_gb(need)}, {_gb(free)} free", dst)

    opts = _options(collection, kept, padding, samples_per_tar)
    own = engine is None
    engine = engine or LocalEngine(1)
    bar = _bar(progress, sum(p.rows for p in parts), sum(p.rows for p in parts if p.task_id in records))
    try:
        tasks = [(collection, str(dst), p, opts) for p in todo]
        try:
            for i, rec in engine.map(run_part, tasks):
                records[todo[i].task_id] = rec
                if bar is not None:
                    bar.update(todo[i].rows)
        except ShardError as exc:  # a source file that cannot be read: running again cannot help
            kept = f"; {len(records)} of {len(parts)} parts are written and kept" if records else ""
            raise ShardError(f"{exc.reason} (a broken source file: running the command again cannot help until it "
                             f"is repaired or replaced{kept})", exc.path, exc.row) from None
        except WorkbenchError as exc:
            said = exc.reason if exc.path == str(dst) and exc.row is None else str(exc)  # DST is named once
            raise IncompleteError(f"{said} [{len(records)} of {len(parts)} parts are written and kept; "
                                  "run the same command again to resume]", dst) from None
    finally:
        if bar is not None:
            bar.close()
        if own:
            engine.close()

    manifest = _manifest(collection, dst, parts, records, formats, rows_per_shard, padding, samples_per_tar,
                         params, model, digest, extras)
    part_seconds = [records[p.task_id].get("seconds", 0.0) for p in todo]
    return ExportResult(manifest, {"tasks": len(parts), "done_now": len(todo), "resumed": resumed,
                                   "already_complete": False, "seconds": round(time.perf_counter() - t0, 3),
                                   "part_seconds": round(sum(part_seconds), 3),
                                   "processes": len({records[p.task_id].get("pid") for p in todo})})


def _gb(n: float) -> str:
    if n >= 1e8:
        return f"{n / 1e9:.2f} GB"
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def _bar(progress, total: int, done: int):
    """The write's bar (:func:`workbench.io.progress.progress_bar`), starting at the `done` resumed rows."""
    return progress_bar(progress, total, "writing", unit="row", initial=done, unit_scale=True)


def available_formats(collection) -> list[str]:
    """The output formats this collection can be written in (what its columns and images allow)."""
    canon = collection.canonical
    out = ["laion"]
    if collection.images or "image_path" in canon:
        out.append("webdataset")
    if "url" in canon:
        out.append("img2dataset")
    if "uid" in canon:
        out.append("datacomp")
    return out


def _check_formats(collection, formats, dst) -> None:
    canon = collection.canonical
    if "img2dataset" in formats and "url" not in canon:
        raise WriteError("the img2dataset format needs a url column, which the collection lacks", dst)
    if "datacomp" in formats and "uid" not in canon:
        raise WriteError("the datacomp format needs DataComp's uid column, which the collection lacks "
                         "(use --format img2dataset for a url list)", dst)
    if "webdataset" in formats and not (collection.images or "image_path" in canon):
        raise WriteError("the webdataset format needs images: the collection has no tars and no image_path column", dst)


def _source_files(collection) -> list[dict]:
    """Each source shard's rows and files (path relative to the source, size in bytes)."""
    root = collection.path if collection.path.is_dir() else collection.path.parent
    out = []
    for s in collection.shards:
        files = []
        for f in s.files:
            try:
                rel = f.relative_to(root).as_posix()
            except ValueError:
                rel = str(f)
            files.append({"path": rel, "bytes": f.stat().st_size})
        out.append({"shard": s.name, "rows": s.rows, "files": files})
    return out


def _manifest(collection, dst: Path, parts, records, formats, rows_per_shard, padding, samples_per_tar,
              params, model, digest, extras) -> dict:
    files, extra_files, shards, outputs = [], [], [], {}
    for p in parts:
        rec = records[p.task_id]
        if p.fmt == "laion":
            files += rec["files"]
            if p.rows:
                shards.append({"name": shard_name(p.number, padding), "rows": p.rows,
                               "files": [e["path"] for e in rec["files"]]})
        else:
            extra_files += rec["files"]
        out = outputs.setdefault(p.fmt, {"parts": 0, "rows": 0})
        out["parts"] += 1
        out["rows"] += p.rows
        for k, v in rec.get("stats", {}).items():
            out[k] = out.get(k, 0) + v
    def write_extras(tmp: Path) -> list[dict]:
        files = []
        for rel, write in (extras or {}).items():
            rel = sidecar_path(rel, dst)
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            write(tmp / rel)
            if not (tmp / rel).exists():
                raise WriteError(f"sidecar writer did not create {rel}", dst)
            files.append({"path": rel})
        return files

    if extras:
        try:
            extra_files += staged_task(dst, "extras", write_extras)["files"]
        except WriteError as exc:
            if isinstance(exc, IncompleteError):
                raise
            said = exc.reason if exc.path == str(dst) and exc.row is None else str(exc)  # DST is named once
            raise IncompleteError(f"{said} [the data parts are written and kept; run the same command again to "
                                  "resume]", dst) from None
    laion = "laion" in formats
    opts = {"image": collection.has_embeddings, "text": collection.has_text_embeddings}
    manifest = {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "layout": ("embeddings" if (opts["image"] or opts["text"]) else "parquet") if laion else None,
        "rows": sum(s["rows"] for s in shards) if laion else int(params["selected_rows"]),
        "dim": collection.dim if laion else None,
        "dtype": _out_dtype(collection.dtype) if laion else None,
        "dtype_conversion": dtype_conversion(collection.dtype) if laion else None,
        "rows_per_shard": int(rows_per_shard),
        "padding": int(padding),
        "samples_per_tar": int(samples_per_tar),
        "shards": shards,
        "files": files,
        "extra_files": extra_files,
        "outputs": outputs,
        "source": {**collection.identity(), "skipped_shards": collection.skipped, "shard_files": _source_files(collection)},
        "model": model,
        "parameters": params,
        "plan": digest,
    }
    return write_manifest(dst, manifest)


# -- the one-call form: a subset in the LAION layout -------------------------------------------
def as_rows(collection, rows) -> np.ndarray:
    """Sorted unique global row ids from ids or a boolean mask over the whole collection."""
    if rows is None:
        return np.arange(len(collection), dtype=np.int64)
    arr = np.asarray(rows)
    if arr.dtype == bool:
        if arr.shape != (len(collection),):
            raise ConfigError(f"a mask needs {len(collection)} entries, got {arr.shape}")
        return np.nonzero(arr)[0].astype(np.int64)
    arr = np.unique(arr.astype(np.int64))
    collection.shard_of(arr)  # range check
    return arr


def write_subset(
    collection,
    dst: str | Path,
    rows=None,
    *,
    rows_per_shard: int = 1_000_000,
    padding: int = 0,
    parameters: dict | None = None,
    model: dict | None = None,
    extras: dict | None = None,
    formats=("laion",),
    engine=None,
    progress=False,
) -> dict:
    """Write the selected rows of `collection` into `dst` in the LAION layout; returns the manifest.

    The destination must be new or empty (or an unfinished write of the same rows, which is
    resumed) and outside the source. `extras` maps a relative path to a ``write(path)`` function:
    sidecar files written atomically and listed (with sha256) in the manifest. See
    :func:`workbench.export.exporter.export` for the other formats and engines.
    """
    return export(collection, dst, rows, formats=formats, rows_per_shard=rows_per_shard, padding=padding,
                  parameters=parameters, model=model, extras=extras, engine=engine, progress=progress).manifest
