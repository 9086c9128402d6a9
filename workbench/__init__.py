"""A curation workbench for LAION-scale image-text collections.

The stages, one sub-package each, in the order data flows through them (see docs/ARCHITECTURE.md):

    io        shards -> Collection (lazy, memory-mapped), validation, the write protocol, verify
    models    CLIP encoders, detector heads, prompt embeddings, probes
    scoring   score columns per row, cached beside the shards; dedup, neighbours, faiss indexes
    curation  Recipe (declarative rules) -> Selection (a removal reason per row); live counts
    map       UMAP projection and clusters
    papers    the papers' algorithms: sampling, mixing, preference pairs, the audit
    export    a Selection written out (LAION, webdataset, img2dataset, DataComp); embedding runs
    demo      the synthetic demo world
    cli       the ``workbench`` command (a face over the library, no logic)

The names a notebook uses are importable from here (``from workbench import Recipe, apply``).
Reading collections never imports torch: ``import workbench`` stays light, and every name below
but the collection's and the errors' is imported on first use.
"""
from workbench.errors import LayoutError, ManifestError, NoEmbeddingsError, ShardError, WorkbenchError, WriteError
from workbench.io.collection import Collection, EmbeddingChunk, open_collection

__version__ = "0.1.0"

# public name -> the module that defines it (imported on first use)
_LAZY = {
    "validate": "workbench.io.validate",
    "verify": "workbench.io.verify",
    "fetch_release": "workbench.io.fetch",
    "RELEASES": "workbench.io.releases",
    "load_encoder": "workbench.models.encoders",
    "load_head": "workbench.models.heads",
    "text_encoder": "workbench.models.prompts",
    "compute": "workbench.scoring.compute",
    "search": "workbench.scoring.neighbors",
    "neighbors": "workbench.scoring.neighbors",
    "build_index": "workbench.scoring.faissindex",
    "Recipe": "workbench.curation.recipe",
    "Rule": "workbench.curation.recipe",
    "Selection": "workbench.curation.recipe",
    "evaluate": "workbench.curation.recipe",
    "preset": "workbench.curation.recipe",
    "PRESETS": "workbench.curation.recipe",
    "apply": "workbench.curation.apply",
    "join_scores": "workbench.curation.apply",
    "Live": "workbench.curation.live",
    "Workspace": "workbench.curation.workspace",
    "project": "workbench.map.projection",
    "sample": "workbench.papers.sampling",
    "learn_mix": "workbench.papers.mixing",
    "make_pairs": "workbench.papers.preference",
    "keyword_table": "workbench.papers.audit",
    "write_subset": "workbench.export.exporter",
    "embed_images": ("workbench.export.embed", "embed"),
    "build_demo_world": "workbench.demo.build",
}
# `export` is the name of the stage's package (workbench.export); its function is
# workbench.export.export, re-exported by that package.


def __getattr__(name: str):
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'workbench' has no attribute {name!r}")
    import importlib

    module, attr = (target, name) if isinstance(target, str) else target
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "Collection",
    "EmbeddingChunk",
    "open_collection",
    "WorkbenchError",
    "LayoutError",
    "ShardError",
    "NoEmbeddingsError",
    "WriteError",
    "ManifestError",
    *_LAZY,
]
