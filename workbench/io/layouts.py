"""Detecting the on-disk layouts of LAION-style collections and checking their headers.

Four layouts (formats in REFERENCE.md §1), found automatically:

- ``embeddings``: clip-retrieval / LAION folders ``img_emb/``, optional ``text_emb/``, ``metadata/``;
  shards matched by number (unpadded, 4-digit or any padding), never by string order. Tars from
  img2dataset beside them serve the images.
- ``parquet``: metadata only (LAION-5B ``part-*.parquet``, or a single parquet file).
- ``datacomp``: ``<name>.parquet`` + ``<name>.npz`` (``b32_img``, ``b32_txt``, ``l14_img``, ``l14_txt``).
- ``webdataset``: img2dataset output, ``<shard>.tar`` + ``<shard>.parquet``; rows are the
  successful downloads (the samples present in the tars), in parquet order.

Only headers are read here (npy headers, parquet footers): nothing proportional to the data.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from workbench.errors import LayoutError, ShardError, first_line
from workbench.io.npyfile import NpyArray, npz_members, read_npy, read_npz_member, symlink_loop
from workbench.io.schema import DATACOMP_SIMILARITY

LAYOUTS = ("embeddings", "parquet", "datacomp", "webdataset")
EXPORT_FORMATS = ("laion", "webdataset", "img2dataset", "datacomp")  # workbench.export.exporter.FORMATS
# folders beside a collection that are never its data: an export's sidecars (removed rows), the write
# protocol's staging, score caches and indexes
RESERVED_DIRS = ("sidecars", ".staging", ".workbench")
DATACOMP_MODELS = ("l14", "b32")  # default order: DataComp filters with ViT-L/14


@dataclass(frozen=True)
class ShardFiles:
    """The files of one shard, and what their headers say."""

    name: str  # the shard's name in file names, e.g. "7", "0007", "00000"
    number: int | None
    rows: int
    metadata: Path | None = None
    schema: pa.Schema | None = None  # the metadata file's arrow schema
    image: NpyArray | None = None
    text: NpyArray | None = None
    tar: Path | None = None
    success_only: bool = False  # img2dataset parquet: keep rows whose status is "success"

    @property
    def files(self) -> list[Path]:
        out = [self.metadata, self.tar]
        out += [a.path for a in (self.image, self.text) if a is not None]
        return [p for p in out if p is not None]


@dataclass
class Layout:
    kind: str
    root: Path
    shards: list[ShardFiles]
    model: str | None = None  # DataComp: the model whose embeddings are used
    models: list[str] = field(default_factory=list)
    prefer: dict[str, str] = field(default_factory=dict)  # canonical spelling preferences
    images: str | None = None  # "webdataset" when tars hold the images
    image_dirs: list[Path] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)  # broken shards left out (open with on_error="skip")


# -- helpers ------------------------------------------------------------------------------------
def _check_columns(names: list[str], path: Path) -> None:
    """Refuse a schema in which a column name is ambiguous: two columns of one name, or two that
    differ only in case and both spell a canonical column (``TEXT`` and ``text``: which caption?)."""
    from workbench.io.schema import CANONICAL

    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise ShardError(f"two columns named {n!r}: which one is meant is ambiguous; rename one", path)
        seen.add(n)
    spells = {s.lower(): canon for canon, (_, spellings) in CANONICAL.items() for s in spellings}
    spells.update({s.lower(): "similarity" for s in DATACOMP_SIMILARITY.values()})
    first: dict[str, str] = {}
    for n in names:
        k = n.lower()
        if k in spells:
            if k in first:
                raise ShardError(f"columns {first[k]!r} and {n!r} differ only in case and both spell the canonical "
                                 f"column {spells[k]!r}: which one is meant is ambiguous; rename one", path)
            first[k] = n


def _parquet_footer(path: Path) -> tuple[int, pa.Schema]:
    loop = symlink_loop(path)
    if loop:
        raise ShardError(loop, path)
    if path.is_dir():
        raise ShardError("a folder named .parquet, not a parquet file (a partitioned dataset? open it as a "
                         "collection of its own)", path)
    try:
        meta = pq.read_metadata(path)
        schema = meta.schema.to_arrow_schema()
    except (pa.ArrowException, OSError) as exc:
        raise ShardError(f"not a readable parquet file ({first_line(exc)})", path) from None
    _check_columns(schema.names, path)
    return meta.num_rows, schema


def _success_rows(path: Path, schema: pa.Schema) -> int:
    import pyarrow.compute as pc  # only this layout needs it; keeps `workbench info` start-up light

    if "status" not in schema.names:
        return pq.read_metadata(path).num_rows
    try:
        status = pq.read_table(path, columns=["status"]).column("status")
    except (pa.ArrowException, OSError) as exc:
        raise ShardError(f"cannot read the status column ({first_line(exc)})", path) from None
    return int(pc.sum(pc.equal(status, "success")).as_py() or 0)


def numbered_files(folder: Path, pattern: str) -> dict[int, Path]:
    """Files of `folder` matching `pattern` (one group: the shard number), keyed by number."""
    rx = re.compile(pattern)
    found: dict[int, Path] = {}
    for p in folder.iterdir():
        m = rx.fullmatch(p.name)
        if not m:
            continue
        n = int(m.group(1))
        if n in found:
            raise LayoutError(
                f"two files for shard {n}: {found[n].name} and {p.name} (same number, different padding)", folder
            )
        found[n] = p
    return found


def _digits(stem: str) -> int | None:
    m = re.search(r"\d+", stem)
    return int(m.group()) if m else None


def _order_by_number(paths: list[Path]) -> list[Path]:
    """Sort by the first number in the name when every name has a distinct one, else by name."""
    nums = [_digits(p.stem) for p in paths]
    if None not in nums and len(set(nums)) == len(nums):
        return [p for _, p in sorted(zip(nums, paths))]
    return sorted(paths, key=lambda p: p.name)


def _check_dims(shards: list[ShardFiles], guard: "_Guard | None" = None) -> list[ShardFiles]:
    """The shards whose embeddings share the first shard's dim (with `guard` skipping, the others are
    left out and recorded; without it, a different dim is an error)."""
    first: NpyArray | None = None
    kept = []
    for s in shards:
        ok = True
        for arr in (s.image, s.text):
            if arr is None:
                continue
            if first is None:
                first = arr
            elif arr.dim != first.dim:
                err = ShardError(
                    f"embedding dim {arr.dim} differs from {first.dim} in {first.where}: "
                    "shards from different models cannot be mixed",
                    arr.where,
                )
                if guard is None or not guard.skip:
                    raise err
                guard.record(s.name, s.files, err)
                ok = False
                break
        if ok:
            kept.append(s)
    return kept


class _Guard:
    """Per-shard error handling: ``fail`` raises the first broken shard's error; ``skip`` leaves the
    shard out and records it (shard name, its files, the error) so that nothing is skipped silently."""

    def __init__(self, on_error: str = "fail"):
        self.skip = on_error == "skip"
        self.skipped: list[dict] = []

    def record(self, name: str, files, err: Exception) -> None:
        self.skipped.append({"shard": str(name), "files": sorted(str(f) for f in files if f is not None),
                             "error": str(err)})

    def run(self, name: str, files, build):
        try:
            return build()
        except ShardError as err:
            if not self.skip:
                raise
            self.record(name, files, err)
            return None


def _check_members(shards: list[ShardFiles], model: str, guard: "_Guard") -> list[ShardFiles]:
    """DataComp: every archive holds the same arrays of the chosen model (an archive without the
    ``{model}_img`` the others have is broken: its rows would have no image embedding)."""
    for kind, attr in (("img", "image"), ("txt", "text")):
        have = [s for s in shards if getattr(s, attr) is not None]
        lack = [s for s in shards if getattr(s, attr) is None]
        if not have or not lack:
            continue
        kept = []
        for s in shards:
            if getattr(s, attr) is None:
                npz = (s.image or s.text).path  # build() keeps only archives with one of the two
                other = getattr(have[0], attr).path.name
                err = ShardError(f"archive has no array '{model}_{kind}', which {other} has (it has "
                                 f"{npz_members(npz)})", npz)
                if not guard.skip:
                    raise err
                guard.record(s.name, s.files, err)
            else:
                kept.append(s)
        shards = kept
    return shards


def _check_rows(name: str, counts: list[tuple[str, int]]) -> int:
    values = {n for _, n in counts}
    if len(values) > 1:
        desc = ", ".join(f"{where} has {n} rows" for where, n in counts)
        raise ShardError(f"row counts differ within shard {name}: {desc}", counts[0][0])
    return counts[0][1]


# -- the four layouts --------------------------------------------------------------------------
def _embeddings(root: Path, guard: _Guard | None = None) -> Layout:
    guard = guard or _Guard()
    dirs = {k: root / k for k in ("img_emb", "text_emb", "metadata")}
    found = {
        "img_emb": numbered_files(dirs["img_emb"], r"img_emb_(\d+)\.npy") if dirs["img_emb"].is_dir() else None,
        "text_emb": numbered_files(dirs["text_emb"], r"text_emb_(\d+)\.npy") if dirs["text_emb"].is_dir() else None,
        "metadata": numbered_files(dirs["metadata"], r"metadata_(\d+)\.parquet") if dirs["metadata"].is_dir() else None,
    }
    present = {k: v for k, v in found.items() if v}
    if not present or not (present.get("img_emb") or present.get("text_emb")):
        raise LayoutError("no embedding shards (img_emb/img_emb_<i>.npy or text_emb/text_emb_<i>.npy)", root)
    numbers = sorted(set().union(*[set(v) for v in present.values()]))
    for kind, files in present.items():
        missing = [n for n in numbers if n not in files]
        if missing:
            other_kind = next(k for k, v in present.items() if missing[0] in v)
            err = ShardError(
                f"shard {missing[0]} has {other_kind}/{present[other_kind][missing[0]].name} but no file in {kind}/"
                + (f" ({len(missing)} shards lack one)" if len(missing) > 1 else ""),
                dirs[kind],
            )
            if not guard.skip:
                raise err
            for n in missing:
                guard.record(str(n), [v[n] for v in present.values() if n in v],
                             ShardError(f"shard {n} has no file in {kind}/", dirs[kind]))
            numbers = [n for n in numbers if n not in set(missing)]

    def build(n):
        img = read_npy(present["img_emb"][n]) if "img_emb" in present else None
        txt = read_npy(present["text_emb"][n]) if "text_emb" in present else None
        meta, schema, counts = None, None, []
        if img is not None:
            counts.append((str(img.path), img.rows))
        if txt is not None:
            counts.append((str(txt.path), txt.rows))
        if "metadata" in present:
            meta = present["metadata"][n]
            rows, schema = _parquet_footer(meta)
            counts.append((str(meta), rows))
        rows = _check_rows(str(n), counts)
        name = (img or txt).path.stem.split("_")[-1]
        return ShardFiles(name, n, rows, meta, schema, img, txt)

    shards = [guard.run(str(n), [v[n] for v in present.values()], lambda n=n: build(n)) for n in numbers]
    shards = _check_dims([x for x in shards if x is not None], guard)
    layout = Layout("embeddings", root, shards, skipped=guard.skipped)
    tars = sorted(root.glob("*.tar"))
    if tars:
        layout.images, layout.image_dirs = "webdataset", [root]
    return layout


def _parquet(root: Path, folder: Path | None = None, guard: _Guard | None = None) -> Layout:
    """Metadata only: a parquet file, a folder of them, or a written ``metadata/`` folder (`folder`)."""
    where = folder or root
    # every *.parquet entry is a shard: a folder or a symlink loop of that name is an error, never skipped
    files = [root] if root.is_file() else _order_by_number(list(where.glob("*.parquet")))
    guard = guard or _Guard()

    def build(p):
        rows, schema = _parquet_footer(p)
        return ShardFiles(p.stem, _digits(p.stem), rows, p, schema)

    shards = [guard.run(p.stem, [p], lambda p=p: build(p)) for p in files]
    return Layout("parquet", root, [x for x in shards if x is not None], skipped=guard.skipped)


def _datacomp(root: Path, model: str | None, guard: _Guard | None = None) -> Layout:
    guard = guard or _Guard()
    npzs = {p.stem: p for p in root.glob("*.npz")}
    parquets = {p.stem: p for p in root.glob("*.parquet")}
    for stem in sorted(set(parquets) ^ set(npzs)):
        have = (parquets.get(stem) or npzs.get(stem))
        want = f"{stem}.npz" if stem in parquets else f"{stem}.parquet"
        err = ShardError(f"DataComp shard without its pair: {want} is missing", have)
        if not guard.skip:
            raise err
        guard.record(stem, [have], err)
        parquets.pop(stem, None)
        npzs.pop(stem, None)
    if not npzs:
        return Layout("datacomp", root, [], skipped=guard.skipped)
    stems = sorted(npzs)  # DataComp names shards by fixed-width hex or numbers
    if all(s.isdigit() for s in stems):
        stems.sort(key=int)
    members = npz_members(npzs[stems[0]])
    models = [m for m in ("b32", "l14") if f"{m}_img" in members or f"{m}_txt" in members]
    if not models:
        raise ShardError(f"no b32_img/l14_img arrays in the archive (it has {members})", npzs[stems[0]])
    if model is None:
        model = next(m for m in DATACOMP_MODELS if m in models)
    elif model not in models:
        raise LayoutError(f"model {model!r} not in this DataComp pool (it has {models})", root)

    def build(stem):
        names = npz_members(npzs[stem])
        img = read_npz_member(npzs[stem], f"{model}_img") if f"{model}_img" in names else None
        txt = read_npz_member(npzs[stem], f"{model}_txt") if f"{model}_txt" in names else None
        if img is None and txt is None:
            raise ShardError(f"archive has no {model}_img or {model}_txt array", npzs[stem])
        rows, schema = _parquet_footer(parquets[stem])
        counts = [(str(parquets[stem]), rows)] + [(a.where, a.rows) for a in (img, txt) if a is not None]
        rows = _check_rows(stem, counts)
        return ShardFiles(stem, int(stem) if stem.isdigit() else None, rows, parquets[stem], schema, img, txt)

    shards = [guard.run(stem, [npzs[stem], parquets[stem]], lambda stem=stem: build(stem)) for stem in stems]
    shards = _check_members([x for x in shards if x is not None], model, guard)
    shards = _check_dims(shards, guard)
    return Layout("datacomp", root, shards, model=model, models=models, prefer={"similarity": DATACOMP_SIMILARITY[model]},
                  skipped=guard.skipped)


def _webdataset(root: Path, guard: _Guard | None = None) -> Layout:
    guard = guard or _Guard()
    tars = _order_by_number(sorted(root.glob("*.tar")))

    def build(tar):
        if symlink_loop(tar):
            raise ShardError(symlink_loop(tar), tar)
        pq_path = tar.with_suffix(".parquet")
        if not pq_path.exists():
            raise ShardError(f"img2dataset writes a parquet beside each tar; {pq_path.name} is missing", tar)
        _, schema = _parquet_footer(pq_path)
        rows = _success_rows(pq_path, schema)
        return ShardFiles(tar.stem, _digits(tar.stem), rows, pq_path, schema, tar=tar, success_only=True)

    shards = [guard.run(tar.stem, [tar, tar.with_suffix(".parquet")], lambda tar=tar: build(tar)) for tar in tars]
    return Layout("webdataset", root, [x for x in shards if x is not None], images="webdataset", image_dirs=[root],
                  skipped=guard.skipped)


def _written_export(root: Path, guard: _Guard) -> Layout | None:
    """An export folder the workbench wrote (its manifest.json says so) opens as what it wrote, never
    as its sidecars: the LAION layout when written (None: detected as usual), else the webdataset
    tars, else the img2dataset url lists; a DataComp uid list alone, or an export of 0 rows, is not
    a collection (one clear error)."""
    import json

    from workbench.io.writer import MANIFEST, MANIFEST_FORMAT

    path = root / MANIFEST
    if not path.is_file():
        return None
    try:
        m = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(m, dict) or m.get("format") != MANIFEST_FORMAT:
        return None
    outputs, params = m.get("outputs"), m.get("parameters")
    if not (isinstance(outputs, dict) and isinstance(params, dict) and "selected_rows" in params) \
            or not set(outputs) <= set(EXPORT_FORMATS):
        return None  # not an export (an embedding run, a demo world)
    if params.get("selected_rows") == 0:
        raise LayoutError("not a collection: an export of 0 rows (nothing was written but manifest.json and "
                          "sidecars/, the removed rows)", root)
    if "laion" in outputs:
        return None
    if "webdataset" in outputs:
        layout = _webdataset(root / "webdataset", guard)
        layout.root = root
        return layout
    if "img2dataset" in outputs:
        return _parquet(root, root / "img2dataset", guard)
    if "datacomp" in outputs:
        n = outputs["datacomp"].get("rows") if isinstance(outputs["datacomp"], dict) else None
        raise LayoutError("not a collection: a uid list (datacomp/uids.npy" + (f", {n:,} uids" if isinstance(n, int) else "")
                          + ": DataComp's subset file); open the pool it was selected from", root)
    return None


def detect(path: str | Path, model: str | None = None, on_error: str = "fail") -> Layout:
    """Find the layout at `path` and check every shard's headers. Raises LayoutError/ShardError;
    with ``on_error="skip"`` broken shards are left out and listed in ``Layout.skipped``."""
    root = Path(path)
    guard = _Guard(on_error)
    if not root.exists():
        raise LayoutError("no such file or folder", root)
    if root.is_file():
        if root.suffix == ".parquet":
            return _parquet(root, guard=guard)
        raise LayoutError("a collection is a folder (or a single .parquet file)", root)
    written = _written_export(root, guard)
    if written is not None:
        return written
    if (root / "img_emb").is_dir() or (root / "text_emb").is_dir():
        return _embeddings(root, guard)
    subs = [d for d in root.iterdir() if d.is_dir() and d.name not in RESERVED_DIRS
            and ((d / "img_emb").is_dir() or (d / "text_emb").is_dir())]
    if subs and any(root.glob("*.tar")):
        if len(subs) > 1:
            raise LayoutError(f"several embedding folders beside the tars: {sorted(s.name for s in subs)}", root)
        layout = _embeddings(subs[0], guard)
        layout.images, layout.image_dirs = "webdataset", [root]
        return layout
    if any(root.glob("*.npz")):
        return _datacomp(root, model, guard)
    if any(root.glob("*.tar")):
        return _webdataset(root, guard)
    if any(root.glob("*.parquet")):
        return _parquet(root, guard=guard)
    if (root / "metadata").is_dir() and any((root / "metadata").glob("metadata_*.parquet")):
        return _parquet(root, root / "metadata", guard)  # what the writer makes of a metadata-only subset
    raise LayoutError(
        "no collection found: expected img_emb/ (+ text_emb/, metadata/), *.parquet, *.tar + *.parquet, "
        "or *.parquet + *.npz",
        root,
    )
