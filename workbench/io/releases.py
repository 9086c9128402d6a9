"""The public releases ``workbench fetch`` knows by name: one table, :data:`RELEASES`.

Each entry says where the release lives, which layout it lands in (``embeddings`` or ``datacomp``, as
:mod:`workbench.io.layouts` detects them), how its parts are enumerated, the remote and local name of
every file of a part, what is published about sizes and hashes, its licence, and caveats.

Parts are enumerated one of two ways:

- ``numbered``: part ``i`` is the shard number ``i`` of the clip-retrieval layout (``img_emb_<i>.npy``
  ...), ``0 .. parts-1``, with the release's zero-padding (``padding``: digits, 0 = none);
- ``listing``: the files have no index in their names (DataComp names a shard by a 128-bit hex
  hash), so the part list is read at fetch time from an index: the Hugging Face Hub's tree API
  (``listing``), which also publishes each file's size and, for LFS files, its sha256. Part ``i`` is
  the ``i``-th shard name in sorted order, the order in which the DataComp layout reads them.

Facts checked against public sources (docs/real-data.md cites them); what could not be checked
offline is said in ``notes``. No hash is written here: where one is published, it comes from the
listing at fetch time.
"""
from __future__ import annotations

from dataclasses import dataclass, field

HF = "https://huggingface.co"


@dataclass(frozen=True)
class FileSpec:
    """One file of a part: its name on the server (relative to the release's base URL) and in the
    destination folder; ``{i}`` is the (padded) shard number, ``{name}`` a listed shard name."""

    remote: str
    local: str
    required: bool = True


@dataclass(frozen=True)
class Release:
    name: str
    title: str
    base_url: str  # ends with "/"
    layout: str  # "embeddings" or "datacomp" (workbench.io.layouts.LAYOUTS)
    enumerate: str  # "numbered" or "listing"
    files: tuple[FileSpec, ...]
    parts: int | None = None  # numbered: how many; listing: None (read from the listing)
    padding: int = 0  # numbered: digits of <i> (0: unpadded)
    listing: str | None = None  # listing: the index URL (the Hub's tree API for the repository)
    rows_per_part: str = ""
    bytes_per_part: str = ""  # what is published or measured about sizes, in words
    total: str = ""
    hashes: str = ""
    licence: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)


def _datacomp(scale: str, rows: str, total: str) -> Release:
    repo = f"mlfoundations/datacomp_{scale}"
    return Release(
        name=f"datacomp-{scale}",
        title=f"DataComp CommonPool, {scale} scale: metadata parquets and CLIP features (.npz)",
        base_url=f"{HF}/datasets/{repo}/resolve/main/",
        layout="datacomp",
        enumerate="listing",
        listing=f"{HF}/api/datasets/{repo}/tree/main",
        files=(FileSpec("{name}.parquet", "{name}.parquet"), FileSpec("{name}.npz", "{name}.npz")),
        rows_per_part="not published per file; read from each parquet footer once fetched",
        bytes_per_part="the Hub lists each file's size; " + (
            "files seen on the Hub: parquet about 121 MB, npz about 3.1 GB" if scale == "small" else
            "not checked here (the Hub lists them at fetch time)"),
        total=total,
        hashes="sha256 of every LFS file, from the Hub's listing (checked after each download)",
        licence="CC-BY-4.0 for the url-text samples and metadata (dataset card); images keep their own copyright",
        notes=(f"pool of {rows} samples (mlfoundations/datacomp README)",
               "parts are the shards' hash names in sorted order, listed from the Hub at fetch time",
               "download_upstream.py in mlfoundations/datacomp fetches the same files with huggingface_hub"),
    )


RELEASES: dict[str, Release] = {
    "laion400m": Release(
        name="laion400m",
        title="LAION-400M embedding release: OpenAI ViT-B/32 image and text embeddings + metadata",
        base_url="https://the-eye.eu/public/AI/cah/laion400m-met-release/laion400m-embeddings/",
        layout="embeddings",
        enumerate="numbered",
        parts=410,
        padding=0,
        files=(FileSpec("images/img_emb_{i}.npy", "img_emb/img_emb_{i}.npy"),
               FileSpec("texts/text_emb_{i}.npy", "text_emb/text_emb_{i}.npy"),
               FileSpec("metadata/metadata_{i}.parquet", "metadata/metadata_{i}.parquet")),
        rows_per_part="about 1,000,000",
        bytes_per_part="not published per file; about 1 GB per .npy (1M rows x 512 float16)",
        total="410 parts (0-409), about 400M rows",
        hashes="none published (sizes are checked against Content-Length; sha256 recorded in fetch.json)",
        licence="CC-BY-4.0 for the metadata (LAION-400M release page); images keep their own copyright",
        notes=("remote folders are images/, texts/, metadata/ (the local layout is img_emb/, text_emb/, metadata/)",
               "LAION took its datasets down in December 2023 after a report of suspected CSAM links; "
               "whether this server still serves the folder could not be checked offline",
               "contains unsafe content: the NSFW column is a zero-shot tag, not a filter"),
    ),
    "datacomp-small": _datacomp("small", "12.8M", "parquets about 3 GB, npz about 75 GB (DataComp README)"),
    "datacomp-medium": _datacomp("medium", "128M", "parquets about 30 GB, npz about 750 GB (DataComp README)"),
}


def release(name: str) -> Release:
    """The release of that name; a :class:`workbench.errors.WorkbenchError` listing the known ones otherwise."""
    from workbench.errors import WorkbenchError

    try:
        return RELEASES[name]
    except KeyError:
        raise WorkbenchError(f"unknown release {name!r}: known releases are {', '.join(RELEASES)}, "
                             "or give an http(s):// URL of a folder in the clip-retrieval layout") from None
