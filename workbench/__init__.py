"""A curation workbench for LAION-scale image-text collections.

Reading collections never imports torch: ``import workbench`` stays light.
"""
from .collection import Collection, EmbeddingChunk, open_collection
from .errors import LayoutError, ManifestError, NoEmbeddingsError, ShardError, WorkbenchError, WriteError



def load_head(path, data_dir=None):
    """A head from a registered name or a file: a callable mapping an (n, d) array to n scores.
    See :func:`workbench.heads.load_head`."""
    from .heads import load_head as _load

    return _load(path, data_dir)


__all__ = [
    "load_head",
    "Collection",
    "EmbeddingChunk",
    "open_collection",
    "WorkbenchError",
    "LayoutError",
    "ShardError",
    "NoEmbeddingsError",
    "WriteError",
    "ManifestError",
]
__version__ = "0.1.0"
