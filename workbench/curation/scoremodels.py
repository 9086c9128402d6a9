"""Which model made each score a recipe reads: what ``workbench apply`` reports as ``score_models``.

    score_models(collection, recipe)
    # {"clip_b32_similarity_score": "ViT-B-32 (DataComp's metadata)", "language": "fastText lid.176.ftz", ...}

A DataComp pool's ``similarity`` is the score of the model the pool was opened with (``model l14`` or
``b32``); DataComp's own columns name their model whatever that choice. Scores of the stored
embeddings (prompts, heads, zero-shot, clusters, semantic dedup) are the embedding model's. Columns no
model made (caption lengths, sizes, exact dedup) are not listed.
"""
from __future__ import annotations

from workbench.io.schema import DATACOMP_SIMILARITY

DATACOMP_MODEL_COLUMNS = {col: {"b32": "ViT-B-32", "l14": "ViT-L-14"}[m] + " (DataComp's metadata)"
                          for m, col in DATACOMP_SIMILARITY.items()}
_EMBEDDING_KINDS = ("prompt", "head", "zero_shot", "image_clusters", "datacomp_image", "dedup")


def embedding_model(collection) -> str:
    ident = collection.model_identity or {}
    name = ident.get("name")
    return str(name) if name else "the collection's embedding model (not recorded)"


def score_models(collection, recipe) -> dict[str, str]:
    """Per column of `recipe` that a model made: which model (see the module's docstring)."""
    have = set(collection.metadata.collect_schema().names())
    emb = embedding_model(collection)
    out: dict[str, str] = {}
    for rule in recipe.rules:
        kind = rule.kind
        for col in sorted(rule.columns()):
            if col in DATACOMP_MODEL_COLUMNS:
                out[col] = DATACOMP_MODEL_COLUMNS[col]
            elif col == "similarity":
                if collection.model in DATACOMP_SIMILARITY:
                    out[col] = f"{emb} (DataComp's {DATACOMP_SIMILARITY[collection.model]}: the pool is open with " \
                               f"model {collection.model})"
                elif col in have:
                    out[col] = f"the metadata's similarity column (embeddings: {emb})"
                else:
                    out[col] = f"{emb} (image-text cosine of the stored embeddings)"
            elif kind == "language":
                if col.startswith("language_gcld3"):
                    out[col] = "CLD3 (gcld3)"
                else:
                    out[col] = "the metadata's language column" if col in have else "fastText lid.176.ftz"
            elif col == "datacomp_caption":
                out[col] = "fastText lid.176.ftz"
            elif kind in _EMBEDDING_KINDS and not (kind == "dedup" and rule.params.get("dedup") == "exact"):
                out[col] = emb
    return out
