"""DataComp's image-based baseline as its code computes it (``baselines/apply_filter.py``), and the
published files it reads.

- The caption pre-filter (``caption_filter``): fastText says English (the caption with newlines as
  spaces), more than 1 fastText token (``len(fasttext.tokenize(text))``: runs of characters between
  fastText's separators `` \\n\\r\\t\\v\\f\\0`` plus one end-of-line token per newline) and more than 5
  characters.
- The assignment (``get_centroid_ids_gpu``): each row's stored ViT-L/14 image embedding, as float32,
  goes to the centroid of the largest dot product (no normalisation); a row is kept when its
  centroid is the nearest (same rule) of some ImageNet-1k train image.
- The files: DataComp's published centroids of each scale (``small`` ... ``xlarge``, ``*_centroids_l14.pt``)
  and the ImageNet-1k ViT-L/14 image features (``in1k_clip_vit_l14_{0..4}.pt``), pinned by the sha256
  DataComp's ``download`` checks. They are read from ``<heads folder>/datacomp/`` (the heads folder
  is ``$WORKBENCH_HEADS_DIR``, default ``~/.cache/laion-workbench/heads``), fetched there on first use
  unless ``$WORKBENCH_OFFLINE`` is set; a file whose sha256 differs is refused. Your own centroids or
  reference (``.npy``, ``(k, d)`` float) may be given instead.

Training the centroids the way DataComp did (faiss L2 k-means, 20 iterations, over every
caption-filtered row, on GPUs) is not reproduced here: the published centroids are what its
baseline used.
"""
from __future__ import annotations

import os
import secrets
import shutil
import zipfile
from functools import lru_cache
from pathlib import Path

import numpy as np
import polars as pl

from workbench.errors import WorkbenchError, first_line
from workbench.io.files import sha256_file
from workbench.scoring.scorers import Scorer, fasttext_language, fasttext_lid, fasttext_lid_path

_ASSETS = "https://github.com/sagadre/datacomp_baseline_assets/releases/download/v0.1.0-alpha/"
# name -> (file, sha256), as DataComp's baselines/utils.py pins them
ASSETS = {
    "small_centroids": ("small_centroids_l14.pt", "23c66a05e49ad77283c1e2b33355c7eb088ac332a944c97ff85d5dfd48a5b251"),
    "medium_centroids": ("medium_centroids_l14.pt", "028b1721b1d0f139c565b6b0ac99f8a1756f4bae89c36b0ec6d1c6ea9b6f112d"),
    "large_centroids": ("large_centroids_l14.pt", "04eeab1069d3540c246cf7ce69323147351a474017fc472e4c50a018ca32240b"),
    "xlarge_centroids": ("xlarge_centroids_l14.pt", "3f62e5f8ae3a715ce84e422846fcfce1536d184455ea234790c4a6465c4c6726"),
    **{f"in1k_clip_vit_l14_{i}": (f"in1k_clip_vit_l14_{i}.pt", h) for i, h in enumerate((
        "304990fd492f40ba90072b80af78d6e8edcab9d042476ef513e03441cf53743b",
        "72f008e6aa3bfb54174fa322963215337f843fc90fd642a9dccc815dd9e7ee76",
        "83c3cc6503b8a50a22cac7023ca6cd61b130ab9725db2a7519f1bec5cabf5493",
        "83faa289f847799ddcd438e5b74df1cb5973c345674896d10ba31ea48bc63804",
        "067a45f4a140a93371876510a2fd9198a89ac1d194ae4063a51b45a6da69cadf"))},
}
SCALES = ("small", "medium", "large", "xlarge")
ASSIGN_ROWS = 1024  # DataComp's batch size: rows x centroids float32 products at a time
FASTTEXT_SEPARATORS = " \n\r\t\x0b\x0c\x00"


# -- the published files ------------------------------------------------------------------------------------------------
def asset_path(name: str) -> Path:
    """Where DataComp's file `name` lies: ``<heads folder>/datacomp/<file>``."""
    from workbench.models.headfiles import default_heads_dir

    return default_heads_dir() / "datacomp" / ASSETS[name][0]


@lru_cache(maxsize=16)
def _checked(path: str, size: int, mtime_ns: int, sha256: str) -> bool:
    return sha256_file(path) == sha256


def ensure_asset(name: str) -> Path:
    """The path of DataComp's file `name`, its sha256 checked; fetched first when missing (unless
    ``$WORKBENCH_OFFLINE``). Refused with a message saying where to place it when it cannot be had."""
    from workbench.models.headfiles import offline

    fname, sha = ASSETS[name]
    dest = asset_path(name)
    if not dest.is_file():
        if offline():
            raise WorkbenchError(_place(name, "is missing and WORKBENCH_OFFLINE is set"), dest)
        _fetch(name, dest)
    st = dest.stat()
    if not _checked(str(dest), st.st_size, st.st_mtime_ns, sha):
        raise WorkbenchError(f"not DataComp's {fname}: its sha256 is not the pinned {sha}; remove it and fetch it "
                             "again", dest)
    return dest


def _place(name: str, why: str) -> str:
    fname, sha = ASSETS[name]
    return (f"DataComp's {fname} {why}: download {_ASSETS + fname} (sha256 {sha}) and place it at "
            f"{asset_path(name)}")


def _fetch(name: str, dest: Path) -> None:
    import pooch

    fname, sha = ASSETS[name]
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{fname}.{os.getpid()}-{secrets.token_hex(4)}.fetch"
    tmp.mkdir()
    try:
        got = pooch.retrieve(_ASSETS + fname, known_hash=f"sha256:{sha}", fname=fname, path=tmp, progressbar=False)
        os.replace(got, dest)
    except Exception as exc:  # noqa: BLE001 - network and checksum failures alike: nothing is kept
        raise WorkbenchError(_place(name, f"could not be fetched ({type(exc).__name__}: {first_line(exc)[:160]})"),
                             dest) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def read_torch_array(path: Path) -> np.ndarray:
    """A numpy array saved with ``torch.save`` (DataComp's centroids), read without torch and without
    running anything else in the pickle."""
    from workbench.models.arraypickle import load_array_pickle

    try:
        with zipfile.ZipFile(path) as z:
            pkl = [n for n in z.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            if not pkl:
                raise WorkbenchError("no data.pkl in the torch file", path)
            return load_array_pickle(z.read(pkl[0]), path)
    except zipfile.BadZipFile:
        raise WorkbenchError("not a torch zip file (torch.save)", path) from None


def _array(path: Path) -> np.ndarray:
    if path.suffix == ".npy":
        a = np.load(path, allow_pickle=False)
    elif path.suffix == ".pt":
        a = read_torch_array(path)
    else:
        raise WorkbenchError("expected a .npy (or a torch-saved numpy .pt) array", path)
    if a.ndim != 2 or a.dtype.kind not in "fiu":
        raise WorkbenchError(f"expected a (k, d) numeric array, got shape {a.shape} of {a.dtype}", path)
    return np.ascontiguousarray(a, dtype=np.float32)


def _resolve(spec: str, base: Path | None) -> Path:
    p = Path(spec)
    if not p.is_absolute() and base is not None:
        p = Path(base) / p
    if not p.is_file():
        raise WorkbenchError("no such file", p)
    return p


def load_centroids(spec: str, base: Path | None = None) -> tuple[np.ndarray, str]:
    """(centroids float32 (k, d), sha256): DataComp's of a scale (`spec` in :data:`SCALES`) or a file."""
    path = ensure_asset(f"{spec}_centroids") if spec in SCALES else _resolve(spec, base)
    return _array(path), sha256_file(path)


def load_reference(spec, base: Path | None = None) -> tuple[np.ndarray, list[str]]:
    """(reference float32 (n, d), sha256s): ``imagenet-1k`` (DataComp's five ImageNet-1k ViT-L/14
    feature files, ``torch.load(f)["image_features"]``) or .npy files."""
    if spec == "imagenet-1k":
        import torch

        parts, shas = [], []
        for i in range(5):
            path = ensure_asset(f"in1k_clip_vit_l14_{i}")
            parts.append(torch.load(path, map_location="cpu", weights_only=True)["image_features"].float().numpy())
            shas.append(ASSETS[f"in1k_clip_vit_l14_{i}"][1])
        return np.ascontiguousarray(np.concatenate(parts), dtype=np.float32), shas
    paths = [_resolve(s, base) for s in ([spec] if isinstance(spec, str) else spec)]
    return np.concatenate([_array(p) for p in paths]), [sha256_file(p) for p in paths]


def nearest_centroid(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """DataComp's ``get_centroid_ids_gpu``: argmax over centroids of ``x.float() @ centroids.T``, in
    blocks of :data:`ASSIGN_ROWS` rows."""
    out = np.zeros(len(x), np.int64)
    for a in range(0, len(x), ASSIGN_ROWS):
        out[a:a + ASSIGN_ROWS] = np.argmax(np.asarray(x[a:a + ASSIGN_ROWS], np.float32) @ centroids.T, axis=1)
    return out


# -- the caption pre-filter ---------------------------------------------------------------------------------------------
def fasttext_token_count(c: pl.Expr) -> pl.Expr:
    """``len(fasttext.tokenize(text))``: fastText's ``readWord`` splits on its six separators and NUL,
    and gives one end-of-sentence token per newline."""
    return c.str.extract_all(r"[^ \n\r\t\x0b\x0c\x00]+").list.len() + c.str.count_matches("\n")


class DataCompCaptionScorer(Scorer):
    """Per shard: DataComp's ``caption_filter`` (see the module's docstring), one boolean column
    ``datacomp_caption``; a null caption is False."""

    needs = "metadata"
    column = "datacomp_caption"
    schema = {"datacomp_caption": pl.Boolean}

    def prepare(self, collection) -> None:
        if "caption" not in collection.metadata.collect_schema().names():
            raise WorkbenchError("DataComp's caption filter needs captions, which this collection lacks",
                                 collection.path)
        fasttext_lid_path()

    def spec(self) -> dict:
        return {"scorer": "datacomp_caption", "model": "fasttext lid.176.ftz",
                "sha256": sha256_file(fasttext_lid_path()), "rule": "en & fasttext tokens > 1 & chars > 5"}

    def shard_frame(self, collection, shard: int) -> pl.DataFrame:
        model = fasttext_lid()
        df = collection.shard_metadata(shard).select("caption").collect()
        ok = df.select((fasttext_token_count(pl.col("caption")) > 1) & (pl.col("caption").str.len_chars() > 5))
        ok = ok.to_series().fill_null(False).to_numpy()
        caps = df["caption"].to_list()
        out = np.zeros(len(caps), bool)
        for i in np.flatnonzero(ok):
            out[i] = fasttext_language(model, caps[i])[0] == "en"
        return pl.DataFrame({self.column: pl.Series(out, dtype=pl.Boolean)})


class DataCompImageScorer(Scorer):
    """Per chunk of stored image embeddings: the nearest centroid (DataComp's assignment) and whether
    it is the nearest centroid of some reference row. Columns ``<column>`` (Int32) and
    ``<column>_near`` (Boolean). A DataComp pool must be opened with its ViT-L/14 embeddings when the
    centroids are DataComp's (they are L/14's)."""

    needs = "image"

    def __init__(self, column: str, centroids: str = "small", reference="imagenet-1k", base: Path | None = None):
        self.column, self.centroids_spec, self.reference_spec, self.base = column, centroids, reference, base
        self.schema = {column: pl.Int32, column + "_near": pl.Boolean}
        self.centroids: np.ndarray | None = None
        self.targets: np.ndarray | None = None
        self._id: dict = {}

    def prepare(self, collection) -> None:
        if not collection.has_embeddings:
            raise WorkbenchError("DataComp's image-based filter needs image embeddings, which this collection lacks",
                                 collection.path)
        if self.centroids_spec in SCALES and collection.model not in (None, "l14"):
            raise WorkbenchError(f"DataComp's image-based filter assigns ViT-L/14 image embeddings, but this pool "
                                 f"is open with its {collection.model} ones: open it with model l14", collection.path)
        cent, csha = load_centroids(self.centroids_spec, self.base)
        if collection.dim is not None and cent.shape[1] != collection.dim:
            raise WorkbenchError(f"the centroids are {cent.shape[1]}-d but this collection's image embeddings are "
                                 f"{collection.dim}-d (another model?)", collection.path)
        ref, rsha = load_reference(self.reference_spec, self.base)
        if ref.shape[1] != cent.shape[1]:
            raise WorkbenchError(f"the reference is {ref.shape[1]}-d but the centroids are {cent.shape[1]}-d")
        self.centroids, self.targets = cent, np.unique(nearest_centroid(ref, cent))
        self._id = {"centroids": csha, "reference": rsha}

    def spec(self) -> dict:
        return {"scorer": "datacomp_image", **self._id, "assign": "argmax float32 dot, no normalisation"}

    def chunk(self, view) -> dict[str, np.ndarray]:
        ids = nearest_centroid(view.raw, self.centroids)
        return {self.column: ids.astype(np.int32), self.column + "_near": np.isin(ids, self.targets)}
