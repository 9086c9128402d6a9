"""Reading a source shard's metadata rows for an export: only the row groups the rows span, every
string checked (pyarrow copies invalid UTF-8 unchecked, which no reader of the output accepts)."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from workbench.errors import ShardError, first_line


# -- ---------------------------------------------------------------------------
def _check_values(table: pa.Table, path) -> None:
    """pyarrow reads string columns unchecked: one that is not UTF-8 (which polars, and every reader
    of the output, refuses) is refused here, naming its column, rather than copied into the output."""
    for name, col in zip(table.column_names, table.columns):
        try:
            col.validate(full=True)
        except pa.ArrowInvalid as exc:
            raise ShardError(f"column {name!r} holds invalid values ({first_line(exc)})", path) from None


def source_rows_table(collection, shard: int, rows: np.ndarray, columns: list[str] | None = None) -> pa.Table:
    """The metadata rows `rows` (local, sorted) of a source shard, reading only the row groups they span."""
    s = collection.shards[shard]
    try:
        f = pq.ParquetFile(s.metadata)
        if s.success_only and "status" in f.schema_arrow.names:
            table = f.read(columns=columns if columns is None or "status" in columns else columns + ["status"])
            _check_values(table, s.metadata)
            table = table.filter(pc.equal(table.column("status"), "success"))
            if columns is not None and "status" not in columns:
                table = table.drop_columns(["status"])
            if table.num_rows != s.rows:
                raise ShardError(f"has {table.num_rows} rows now, {s.rows} when the collection was opened", s.metadata)
            return table.take(pa.array(rows))
        md = f.metadata
        if md.num_rows != s.rows:
            raise ShardError(f"has {md.num_rows} rows now, {s.rows} when the collection was opened", s.metadata)
        if len(rows) == 0:
            return f.schema_arrow.empty_table() if columns is None else f.schema_arrow.empty_table().select(columns)
        starts = np.cumsum([0] + [md.row_group(g).num_rows for g in range(md.num_row_groups)])
        g0 = int(np.searchsorted(starts, rows[0], side="right") - 1)
        g1 = int(np.searchsorted(starts, rows[-1], side="right") - 1)
        table = f.read_row_groups(list(range(g0, g1 + 1)), columns=columns)
        _check_values(table, s.metadata)
        return table.take(pa.array(rows - starts[g0]))
    except (pa.ArrowException, OSError) as exc:
        raise ShardError(f"cannot read metadata ({first_line(exc)})", s.metadata) from None
