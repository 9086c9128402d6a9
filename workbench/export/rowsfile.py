"""Rows files: a ``row`` [, ``count``] parquet (as ``workbench sample`` writes) naming the rows to
write, read value by value, and exported.

    from workbench.export.rowsfile import export_rows_file, read_rows_file
    rows, counts = read_rows_file("picked.parquet", len(collection))
    report = export_rows_file(collection, "out/", "picked.parquet", formats=["laion"])
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from workbench.errors import WorkbenchError
from workbench.export.exporter import FORMATS, REMOVED_ROWS, export
from workbench.io.files import read_parquet_named
from workbench.io.staging import check_destination


def parse_formats(values) -> list[str]:
    """Output formats from ``--format`` values (each one name or a comma-separated list; ``all``:
    every one of :data:`~workbench.export.exporter.FORMATS`), in order, each once; none given:
    ``["laion"]``. An unknown name raises :class:`WorkbenchError` naming it and the choices."""
    out = []
    for v in values or ["laion"]:
        for f in v.split(","):
            f = f.strip()
            if f == "all":
                out += [x for x in FORMATS if x not in out]
            elif f and f not in out:
                if f not in FORMATS:
                    raise WorkbenchError(f"unknown --format {f!r} (choose from {', '.join(FORMATS)}, or all)")
                out.append(f)
    return out


def _whole_numbers(s: pl.Series, what: str, path: str) -> np.ndarray:
    """A rows file's ``row`` or ``count`` column as int64, or one error naming the file and the row
    (its 0-based position in the file): a null, a column that is not numbers (strings, booleans),
    a value that is not a whole number (1.5, NaN, inf)."""
    nulls = s.is_null().arg_true()
    if len(nulls):
        raise WorkbenchError(f"the {what} is empty (null)", path, row=int(nulls[0]))
    if s.dtype.is_integer():
        v = s.cast(pl.Int64, strict=False)  # a uint64 beyond int64 becomes null
        big = v.is_null().arg_true()
        if len(big):
            raise WorkbenchError(f"{what} {s[int(big[0])]} is too large", path, row=int(big[0]))
        return v.to_numpy()
    if s.dtype.is_float():
        v = s.cast(pl.Float64).to_numpy()
        bad = np.nonzero(~np.isfinite(v) | (v != np.floor(v)) | (np.abs(v) >= 2.0 ** 62))[0]
        if len(bad):
            raise WorkbenchError(f"{what} {float(v[bad[0]])!r} is not a whole number", path, row=int(bad[0]))
        return v.astype(np.int64)
    raise WorkbenchError(f"{what} {s[0]!r} is not an integer: the {s.name} column is {s.dtype}, not integer",
                         path, row=0)


def read_rows_file(path, n: int) -> tuple[np.ndarray, np.ndarray | None]:
    """A rows file -> (rows, counts): `rows` the listed global row ids (a row listed twice without
    counts is written once: the file is a set), `counts` None, or one count per row of the
    collection (`n` rows) when the file has ``count`` (each row written that many times; 0: not
    written). Row order in the file never matters. Refused with one line naming the file and the
    row (0-based position in the file): an unreadable file, no ``row`` column, a null, non-integer
    or out-of-range row id, a null, negative or non-integer count, and, with counts, a row id
    listed twice (summing two counts of one row would hide a mistake: merge them first)."""
    path = str(path)
    picked = read_parquet_named(path, "rows file")
    if "row" not in picked.columns:
        raise WorkbenchError("the rows file needs a row column (as workbench sample writes)", path)
    rows = _whole_numbers(picked["row"], "row id", path)
    bad = np.nonzero((rows < 0) | (rows >= n))[0]
    if len(bad):
        raise WorkbenchError(f"row id {rows[bad[0]]} is not in the collection (rows 0..{n - 1})", path,
                             row=int(bad[0]))
    if "count" not in picked.columns:
        return rows, None
    per = _whole_numbers(picked["count"], "count", path)
    neg = np.nonzero(per < 0)[0]
    if len(neg):
        raise WorkbenchError(f"count {per[neg[0]]} is negative", path, row=int(neg[0]))
    order = np.argsort(rows, kind="stable")
    same = np.nonzero(np.diff(rows[order]) == 0)[0]
    if len(same):
        k = np.argmin(order[same + 1])  # the earliest repeat in file order, not the lowest row id
        first, pos = int(order[same[k]]), int(order[same[k] + 1])
        raise WorkbenchError(f"row id {rows[pos]} is listed twice (first at row {first}): with a count column each "
                             "row is listed once (add the counts up first)", path, row=pos)
    counts = np.zeros(n, np.int64)
    counts[rows] = per
    return rows, counts


def unlisted_rows(n: int, rows: np.ndarray, counts: np.ndarray | None) -> pl.DataFrame:
    """The removed rows of an export from a rows file: every source row (of `n`) not written, with
    its reason (``not in rows file`` or ``count 0 in rows file``), as ``row``, ``reason``."""
    listed = np.zeros(n, bool)
    listed[rows] = True
    gone = np.nonzero(~(listed if counts is None else counts > 0))[0]
    reason = np.where(listed[gone], "count 0 in rows file", "not in rows file")
    return pl.DataFrame({"row": gone.astype(np.int64), "reason": reason.tolist()},
                        schema={"row": pl.Int64, "reason": pl.Utf8})


def export_rows_file(collection, dst, rows_file, formats=("laion",), rows_per_shard: int = 1_000_000,
                     samples_per_tar: int = 10_000, engine=None, progress=False) -> dict:
    """Write the rows a rows file lists (:func:`read_rows_file`; counts repeat rows) to `dst`, with
    ``sidecars/removed.parquet`` (:func:`unlisted_rows`) and the rows file's absolute path in the
    manifest parameters (``rows_file``). Refused before anything is written: a rows file listing
    no row to write (no rows, or every count 0), a destination that can never be written.

    Returns what ``workbench export --json`` prints: ``source``, ``out``, ``formats``,
    ``written_rows``, ``removed_rows_file``, ``distinct_rows``, ``outputs``, ``parts``,
    ``resumed_parts``, ``already_complete``."""
    formats = list(formats)
    n = len(collection)
    rows, counts = read_rows_file(rows_file, n)
    if not len(rows) or (counts is not None and not counts.any()):
        raise WorkbenchError("the rows file lists no row to write (no rows, or every count 0): nothing to export",
                             rows_file)
    check_destination(dst, collection.source_paths, keep=False)
    res = export(collection, dst, None if counts is not None else rows, counts=counts, formats=formats,
                 rows_per_shard=rows_per_shard, samples_per_tar=samples_per_tar, engine=engine, progress=progress,
                 parameters={"rows_file": str(Path(rows_file).resolve())},
                 extras={REMOVED_ROWS: lambda p: unlisted_rows(n, rows, counts).write_parquet(p)})
    m = res.manifest
    return {"source": str(collection.path), "out": dst, "formats": formats, "written_rows": m["rows"],
            "removed_rows_file": str(Path(dst) / REMOVED_ROWS),
            "distinct_rows": m["parameters"].get("distinct_rows", m["parameters"]["selected_rows"]),
            "outputs": m.get("outputs", {}), "parts": res.run["tasks"], "resumed_parts": res.run["resumed"],
            "already_complete": res.run["already_complete"]}
