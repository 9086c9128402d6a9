"""``Collection``: a lazy view over a sharded image-text collection.

Metadata is a polars LazyFrame (nothing is read until it is collected); embeddings are memory-
mapped shard by shard and streamed in chunks, never loaded whole. Every row has a global row id
(column ``row``): its 0-based position in canonical order, shards by number, rows in file order.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Iterator

import numpy as np
import polars as pl

from workbench.errors import ConfigError, LayoutError, NoEmbeddingsError, RowRangeError, ShardError, first_line
from workbench.io.kernels import normalize_rows
from workbench.io.layouts import Layout, ShardFiles, detect
from workbench.io.schema import ROW, canonical_exprs, canonical_mapping

DEFAULT_CHUNK_ROWS = 65_536
KINDS = ("image", "text")
ON_ERROR = ("fail", "skip")


_READ_ERRORS = (pl.exceptions.PolarsError, pl.exceptions.PanicException)
# words of polars' messages for a read that failed on the file (every damaged-page error starts with
# "parquet: File out of specification"), as opposed to an expression it refused
_FILE_FAULTS = ("parquet", "utf-8", "utf8", "io error", "os error", "no such file")


def broken_metadata(shards: list[ShardFiles]) -> ShardError | None:
    """The first of these shards' metadata files that polars cannot read (a damaged data page, a
    string that is not UTF-8, ...), as a ShardError naming the file and the column; None when every
    column of every file reads. Footers were checked at open; this reads the data, one column of
    one file at a time, so it is only called once a read has failed, to say where it failed."""
    for s in shards:
        if s.metadata is None or s.schema is None:
            continue
        for col in s.schema.names:
            try:
                pl.read_parquet(s.metadata, columns=[col])
            except (*_READ_ERRORS, OSError) as exc:
                return ShardError(f"cannot read column {col!r} of the metadata ({first_line(exc)})", s.metadata)
    return None


def _plain_frame(state) -> pl.LazyFrame:
    lf = pl.LazyFrame.__new__(pl.LazyFrame)
    lf.__setstate__(state)
    return lf


class MetadataFrame(pl.LazyFrame):
    """A collection's metadata: a polars LazyFrame (frames derived from it by select, filter, join,
    ... are MetadataFrames too) whose ``collect`` turns a read failure on a damaged metadata file
    into a :class:`ShardError` naming the file, instead of polars' message that names none.
    Pickled (for a worker process) as a plain LazyFrame."""

    _shards: tuple = ()  # set on a subclass made per collection (see Collection.guard_reads)

    def collect(self, *args, **kwargs):
        try:
            return super().collect(*args, **kwargs)
        except _READ_ERRORS as exc:
            text = str(exc).lower()
            if not (isinstance(exc, pl.exceptions.PanicException) or any(w in text for w in _FILE_FAULTS)):
                raise  # an expression polars refused (not a file's fault): the caller's to report, no re-read
            err = broken_metadata(list(self._shards))
            if err is None:
                raise  # not a file's fault (an expression polars refused): the caller's to report
            raise err from None  # one line, naming the file

    def __reduce__(self):
        return (_plain_frame, (self.__getstate__(),))


@dataclass(frozen=True)
class EmbeddingChunk:
    """Rows ``start .. start+len(data)`` (global ids) of one shard."""

    start: int
    shard: int
    data: np.ndarray  # (n, dim): float32 unit rows when normalised, else the stored dtype
    valid: np.ndarray | None  # bool (n,): False for NaN/inf/zero-norm rows (zeroed); None when not normalised

    @property
    def rows(self) -> np.ndarray:
        return np.arange(self.start, self.start + len(self.data), dtype=np.int64)


class Collection:
    """A sharded collection; open one with :func:`workbench.open_collection`."""

    def __init__(self, layout: Layout):
        self._layout = layout
        self.path: Path = layout.root
        self.layout: str = layout.kind
        self.shards: list[ShardFiles] = layout.shards
        counts = np.array([s.rows for s in self.shards], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self._rows = int(self.offsets[-1])

    def __reduce__(self):
        """Pickled (for a worker process or a Ray task) as its path and open options, never its data."""
        path, model, on_error = getattr(self, "_open_args", (str(self.path), self._layout.model, "fail"))
        return (_reopen, (path, model, on_error, self.fingerprint))

    @property
    def skipped(self) -> list[dict]:
        """Broken shards left out when opened with ``on_error="skip"``: shard, files, error."""
        return list(self._layout.skipped)

    # -- shape -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._rows

    def __repr__(self) -> str:
        dim = f", dim={self.dim}" if self.dim else ""
        return f"<Collection {self.layout} {str(self.path)!r}: {len(self):,} rows in {len(self.shards)} shards{dim}>"

    @property
    def has_embeddings(self) -> bool:
        return any(s.image is not None for s in self.shards)

    @property
    def has_text_embeddings(self) -> bool:
        return any(s.text is not None for s in self.shards)

    def _first_array(self):
        for s in self.shards:
            for a in (s.image, s.text):
                if a is not None:
                    return a
        return None

    @property
    def dim(self) -> int | None:
        a = self._first_array()
        return None if a is None else a.dim

    @property
    def dtype(self) -> str | None:
        dtypes = sorted({str(a.dtype) for s in self.shards for a in (s.image, s.text) if a is not None})
        return None if not dtypes else "/".join(dtypes)

    @property
    def model(self) -> str | None:
        """DataComp: the model whose embeddings are read (b32 or l14)."""
        return self._layout.model

    @cached_property
    def manifest(self) -> dict | None:
        """The manifest.json of a collection the workbench wrote, if any."""
        p = self.path / "manifest.json"
        if not (self.path.is_dir() and p.is_file()):
            return None
        try:
            m = json.loads(p.read_text())
        except (OSError, ValueError):
            return None
        return m if isinstance(m, dict) else None

    @property
    def model_identity(self) -> dict | None:
        """What is known of the model behind the embeddings (from the manifest, or the DataComp choice)."""
        if self.manifest and isinstance(self.manifest.get("model"), dict):
            return self.manifest["model"]
        if self.model:
            return {"name": {"b32": "ViT-B-32", "l14": "ViT-L-14"}.get(self.model, self.model), "source": "datacomp"}
        return None

    @property
    def image_dirs(self) -> list[Path]:
        """Folders whose tars hold this collection's images."""
        return list(self._layout.image_dirs)

    @property
    def images(self) -> str | None:
        return self._layout.images

    @property
    def source_paths(self) -> list[Path]:
        """Folders (or the file) holding this collection's data: a writer refuses to write into them."""
        return [self.path, *self._layout.image_dirs]

    # -- rows and shards -----------------------------------------------------------------------
    def shard_of(self, rows) -> np.ndarray:
        """Shard index of each global row id."""
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= len(self)):
            bad = rows[(rows < 0) | (rows >= len(self))][0]
            raise RowRangeError(f"row {bad} is out of range: the collection has {len(self)} rows")
        return np.searchsorted(self.offsets, rows, side="right") - 1

    # -- metadata ------------------------------------------------------------------------------
    def guard_reads(self, lf: pl.LazyFrame, shards: list[int] | None = None) -> pl.LazyFrame:
        """`lf` (built on this collection's metadata) as a :class:`MetadataFrame`: a failed read
        names the damaged metadata file among `shards` (default: all). For frames that lost the
        class on the way (``pl.concat`` returns a plain LazyFrame)."""
        cls = self.__dict__.get("_frame_classes", {}).get(None if shards is None else tuple(shards))
        if cls is None:
            picked = self.shards if shards is None else [self.shards[i] for i in shards]
            cls = type("MetadataFrame", (MetadataFrame,), {"_shards": tuple(picked)})
            self.__dict__.setdefault("_frame_classes", {})[None if shards is None else tuple(shards)] = cls
        return cls._from_pyldf(lf._ldf)

    def _shard_frame(self, i: int) -> pl.LazyFrame:
        s = self.shards[i]
        offset = int(self.offsets[i])
        if s.metadata is None:
            return pl.LazyFrame().select(pl.int_range(offset, offset + s.rows, dtype=pl.Int64).alias(ROW))
        lf = pl.scan_parquet(s.metadata)
        if s.success_only and "status" in s.schema.names:
            lf = lf.filter(pl.col("status") == "success")
        schema = dict(pl.Schema(s.schema))
        return self.guard_reads(lf.select(
            (pl.int_range(pl.len(), dtype=pl.Int64) + offset).alias(ROW),
            *canonical_exprs(schema, self._layout.prefer),
        ), [i])

    @cached_property
    def metadata(self) -> pl.LazyFrame:
        """All rows' metadata, lazily: column ``row`` (global id), the originals, and canonical names."""
        if not self.shards:
            return pl.LazyFrame({ROW: []}, schema={ROW: pl.Int64})
        frames = [self._shard_frame(i) for i in range(len(self.shards))]
        if len(frames) == 1:
            return frames[0]
        return self.guard_reads(pl.concat(frames, how="diagonal_relaxed"))

    def shard_metadata(self, i: int) -> pl.LazyFrame:
        """One shard's metadata, with global row ids."""
        return self._shard_frame(i)

    @cached_property
    def columns(self) -> list[str]:
        return self.metadata.collect_schema().names()

    @cached_property
    def canonical(self) -> dict[str, str]:
        """Canonical name -> original column, over all shards."""
        out: dict[str, str] = {}
        for s in self.shards:
            if s.schema is not None:
                for k, v in canonical_mapping(s.schema.names, self._layout.prefer).items():
                    out.setdefault(k, v)
        return out

    # -- embeddings ----------------------------------------------------------------------------
    def _array(self, i: int, kind: str):
        if kind not in KINDS:
            raise ConfigError(f"kind must be one of {KINDS}, not {kind!r}")
        arr = self.shards[i].image if kind == "image" else self.shards[i].text
        if arr is None:
            raise NoEmbeddingsError(self._no_embeddings(kind, i), self.path)
        return arr

    def _no_embeddings(self, kind: str, i: int | None = None) -> str:
        if not self.has_embeddings and not self.has_text_embeddings:
            return (
                f"this {self.layout} collection has no embeddings (metadata only): compute them with "
                "`workbench embed`, or open the embedding folders"
            )
        where = "" if i is None else f" (shard {self.shards[i].name})"
        return f"this collection has no {kind} embeddings{where}"

    def embeddings(self, shard: int, kind: str = "image") -> np.ndarray:
        """One shard's stored embeddings, memory-mapped read-only (as stored: not normalised)."""
        return self._array(shard, kind).open()

    def iter_embeddings(
        self,
        kind: str = "image",
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        normalize: bool = True,
        shards: list[int] | None = None,
    ) -> Iterator[EmbeddingChunk]:
        """Stream embeddings shard by shard in chunks of at most `chunk_rows` rows.

        With ``normalize`` (the default) chunks are float32 unit rows; NaN/inf/zero-norm rows are
        zeroed and marked in ``chunk.valid``. Otherwise chunks are views of the stored arrays.
        """
        if not (self.has_embeddings if kind == "image" else self.has_text_embeddings):
            raise NoEmbeddingsError(self._no_embeddings(kind), self.path)
        for i in range(len(self.shards)) if shards is None else shards:
            arr = self.embeddings(i, kind)
            for start in range(0, arr.shape[0], chunk_rows):
                block = arr[start : start + chunk_rows]
                if normalize:
                    data, valid = normalize_rows(block)
                    yield EmbeddingChunk(int(self.offsets[i]) + start, i, data, valid)
                else:
                    yield EmbeddingChunk(int(self.offsets[i]) + start, i, block, None)

    def take_embeddings(self, rows, kind: str = "image", normalize: bool = True) -> np.ndarray:
        """Embeddings of arbitrary global row ids, in the order given."""
        rows = np.asarray(rows, dtype=np.int64)
        shard = self.shard_of(rows)
        dim = self.dim
        out = np.empty((len(rows), dim), dtype=np.float32 if normalize else self._array(int(shard[0]) if len(rows) else 0, kind).dtype)
        for i in np.unique(shard):
            sel = np.nonzero(shard == i)[0]
            local = rows[sel] - self.offsets[i]
            order = np.argsort(local, kind="stable")
            block = np.asarray(self.embeddings(int(i), kind)[local[order]])
            if normalize:
                block, _ = normalize_rows(block)
            out[sel[order]] = block
        return out

    # -- identity ------------------------------------------------------------------------------
    @cached_property
    def fingerprint(self) -> str:
        """A digest of the files' names, sizes, modification times, row counts and dims."""
        h = hashlib.sha256()
        h.update(f"{self.layout}|{self.model}".encode())
        for s in self.shards:
            for p in s.files:
                st = p.stat()
                h.update(f"|{p.name}:{st.st_size}:{int(st.st_mtime)}".encode())
            h.update(f"|{s.rows}".encode())
        h.update(f"|{self.dim}".encode())
        return h.hexdigest()[:32]

    def identity(self) -> dict:
        """What a manifest records about this collection as a source."""
        manifest = self.path / "manifest.json" if self.path.is_dir() else None
        ident = {
            "model_identity": self.model_identity,
            "path": str(self.path.resolve()),
            "layout": self.layout,
            "rows": len(self),
            "shards": len(self.shards),
            "dim": self.dim,
            "model": self.model,
            "fingerprint": self.fingerprint,
        }
        if manifest is not None and manifest.exists():
            ident["manifest_sha256"] = hashlib.sha256(manifest.read_bytes()).hexdigest()
        return ident

    def info(self) -> dict:
        """A JSON-ready description; reads headers only."""
        numbers = [s.number for s in self.shards if s.number is not None]
        return {
            "path": str(self.path),
            "layout": self.layout,
            "rows": len(self),
            "shards": len(self.shards),
            "dim": self.dim,
            "dtype": self.dtype,
            "image_embeddings": self.has_embeddings,
            "text_embeddings": self.has_text_embeddings,
            "model": self.model,
            "models": self._layout.models or None,
            "model_identity": self.model_identity,
            "images": self.images,
            "shard_numbers": [min(numbers), max(numbers)] if numbers else None,
            "columns": self.columns,
            "canonical": self.canonical,
            "manifest": (self.path / "manifest.json").exists() if self.path.is_dir() else False,
        }


SHARD_SUFFIXES = (".npy", ".npz", ".parquet", ".tar")  # a loop of such a name is a broken shard (see below)
SHARD_FOLDERS = ("img_emb", "text_emb", "metadata")


def _check_loops(root: Path) -> None:
    """Refuse a collection path that is a symlink loop, or a folder (its own or a shard folder's
    entry) that is one: layout detection would otherwise take such a path for absent and read
    something else, silently. A shard file that is a loop is left to the readers: a broken shard
    (``ShardError``, which ``on_error="skip"`` can skip)."""
    from workbench.io.npyfile import symlink_loop

    loop = symlink_loop(root)
    if loop:
        raise LayoutError(loop, root)
    if not root.is_dir():
        return
    for folder in [root] + [root / d for d in SHARD_FOLDERS if (root / d).is_dir()]:
        for p in folder.iterdir():
            if p.suffix in SHARD_SUFFIXES or not p.is_symlink():
                continue
            loop = symlink_loop(p)
            if loop:
                raise LayoutError(loop, p)


def open_collection(path: str | Path, model: str | None = None, on_error: str = "fail") -> Collection:
    """Open the collection at `path` (layout detected; headers checked; nothing else read).

    `model` picks the embeddings of a DataComp pool (``"b32"`` or ``"l14"``; default l14 when present).
    `on_error`: ``"fail"`` (a broken shard is an error) or ``"skip"``: broken shards are left out and
    listed in ``collection.skipped`` (shard, files, error); row ids then count the shards kept.
    """
    if on_error not in ON_ERROR:
        raise ConfigError(f"on_error must be one of {ON_ERROR}, not {on_error!r}")
    _check_loops(Path(path))
    layout = detect(path, model=model, on_error=on_error)
    if not layout.shards:
        raise LayoutError("the collection has no shards" + (" left (every shard is broken)" if layout.skipped else ""), path)
    c = Collection(layout)
    c._open_args = (str(path), model, on_error)
    return c


@lru_cache(maxsize=8)
def _reopened(path: str, model: str | None, on_error: str) -> Collection:
    return open_collection(path, model, on_error)


def _reopen(path: str, model: str | None, on_error: str, fingerprint: str) -> Collection:
    """A collection sent to a worker process: reopened once per process, and checked unchanged."""
    c = _reopened(path, model, on_error)
    c.__dict__.pop("fingerprint", None)  # stat the files again: cheap, and catches a rewrite since the last task
    if c.fingerprint != fingerprint:
        _reopened.cache_clear()
        c = open_collection(path, model, on_error)
        if c.fingerprint != fingerprint:
            raise LayoutError("the collection changed on disk while it was being read (files rewritten, added or removed)", path)
    return c


def describe(info: dict) -> str:
    """Human-readable lines for :meth:`Collection.info`."""
    lines = [
        f"path     {info['path']}",
        f"layout   {info['layout']}" + (f" (model {info['model']} of {info['models']})" if info.get("models") else ""),
        f"shards   {info['shards']}" + (f" (numbers {info['shard_numbers'][0]}..{info['shard_numbers'][1]})" if info.get("shard_numbers") else ""),
        f"rows     {info['rows']:,}",
    ]
    if info["dim"] is None:
        lines.append("dim      none: metadata only, no embeddings")
    else:
        kinds = [k for k, v in (("image", info["image_embeddings"]), ("text", info["text_embeddings"])) if v]
        lines.append(f"dim      {info['dim']} ({info['dtype']}; {' + '.join(kinds)} embeddings)")
    if info.get("images"):
        lines.append(f"images   {info['images']}")
    canon = info["canonical"]
    cols = [c for c in info["columns"] if c != ROW]
    lines.append("columns  " + ", ".join(cols))
    if canon:
        lines.append("canonical " + ", ".join(f"{k}<-{v}" if k != v else k for k, v in canon.items()))
    return "\n".join(lines)


def info_json(info: dict) -> str:
    return json.dumps(info, sort_keys=False)
