"""A curation workbench for LAION-scale image-text collections.

Reading collections never imports torch: ``import workbench`` stays light.
"""
from .collection import Collection, EmbeddingChunk, open_collection
from .errors import LayoutError, ManifestError, NoEmbeddingsError, ShardError, WorkbenchError, WriteError

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
]
__version__ = "0.1.0"
