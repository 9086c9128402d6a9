"""The canonical metadata schema: one name per meaning over the many spellings of LAION-style releases.

Originals are never dropped or rewritten: a canonical column is added beside the original whenever
the spelling differs, and files on disk are left untouched (exports copy the original columns).
"""
from __future__ import annotations

import polars as pl

ROW = "row"  # the global row id: 0-based position in canonical order (shards by number, rows in file order)

# canonical name -> (dtype, spellings in order of preference, compared case-insensitively)
CANONICAL: dict[str, tuple[pl.DataType, tuple[str, ...]]] = {
    "url": (pl.Utf8, ("url",)),
    "caption": (pl.Utf8, ("caption", "text", "top_caption")),
    "similarity": (pl.Float64, ("similarity", "clip_similarity", "similarity_score")),
    "punsafe": (pl.Float64, ("punsafe", "p_unsafe", "prob_unsafe")),
    "pwatermark": (pl.Float64, ("pwatermark", "p_watermark", "prob_watermark")),
    "nsfw_tag": (pl.Utf8, ("nsfw", "nsfw_tag")),
    # the size of the image at its source: img2dataset's `width` is the resized one
    "width": (pl.Int64, ("original_width", "width")),
    "height": (pl.Int64, ("original_height", "height")),
    "key": (pl.Utf8, ("key", "sample_id")),
    "uid": (pl.Utf8, ("uid",)),
    "hash": (pl.Int64, ("hash",)),
    "image_path": (pl.Utf8, ("image_path",)),
    "language": (pl.Utf8, ("language", "lang")),
    "license": (pl.Utf8, ("license",)),
    "status": (pl.Utf8, ("status",)),
}

# DataComp keeps one similarity column per model
DATACOMP_SIMILARITY = {"b32": "clip_b32_similarity_score", "l14": "clip_l14_similarity_score"}


def canonical_mapping(columns: list[str], prefer: dict[str, str] | None = None) -> dict[str, str]:
    """Map canonical name -> original column name, for the canonical names these columns spell.

    `prefer` puts a layout-specific spelling first (e.g. DataComp's per-model similarity).
    """
    lower = {}
    for c in columns:
        lower.setdefault(c.lower(), c)
    found: dict[str, str] = {}
    for name, (_, spellings) in CANONICAL.items():
        order = ((prefer or {}).get(name),) + spellings
        for s in order:
            if s is not None and s.lower() in lower:
                found[name] = lower[s.lower()]
                break
    return found


def canonical_exprs(schema: dict[str, pl.DataType], prefer: dict[str, str] | None = None) -> list[pl.Expr]:
    """Expressions that select every original column plus the canonical ones, cast to their types.

    An original column whose name is taken by a canonical column of another origin (or by the row
    id) stays visible as ``<name>_src``.
    """
    mapping = canonical_mapping(list(schema), prefer)
    exprs: list[pl.Expr] = []
    for col in schema:
        if mapping.get(col) == col:
            continue  # canonical under its own name: emitted, cast, below
        if col == ROW or col in mapping:
            exprs.append(pl.col(col).alias(f"{col}_src"))
        else:
            exprs.append(pl.col(col))
    for name, original in mapping.items():
        dtype = CANONICAL[name][0]
        e = pl.col(original)
        if schema[original] != dtype:
            e = e.cast(dtype, strict=False)
        exprs.append(e.alias(name))
    return exprs
