"""One exception family per kind of failure; every message names the file (and row) at fault."""
from __future__ import annotations

from pathlib import Path


class WorkbenchError(Exception):
    """Base of every error the workbench raises on purpose. The CLI prints its message, no traceback."""

    def __init__(self, message: str, path: str | Path | None = None, row: int | None = None):
        self.path = None if path is None else str(path)
        self.row = row
        self.reason = message
        where = ""
        if self.path is not None:
            where = f"{self.path}: "
        if row is not None:
            where += f"row {row}: "
        super().__init__(where + message)

    def __reduce__(self):  # keep path and row when an error crosses a process (pool or Ray worker)
        return (type(self), (self.reason, self.path, self.row))


class LayoutError(WorkbenchError):
    """The files on disk do not form a collection the workbench can read."""


class ShardError(LayoutError):
    """One shard file is broken: truncated, not .npy/.parquet, unsafe, or inconsistent with its siblings."""


class NoEmbeddingsError(WorkbenchError):
    """An operation needs embeddings, and the collection has none."""


class WriteError(WorkbenchError):
    """Writing a collection failed or was refused (e.g. into its own source)."""


class ManifestError(WorkbenchError):
    """A manifest is missing, malformed, or does not match the files beside it."""


class RecipeError(WorkbenchError):
    """A recipe is malformed, names an unknown rule, or needs a column the data lacks."""


class EngineError(WorkbenchError):
    """A per-shard task could not run where the engine sends it (no Ray, a worker died, a lost cluster)."""


class IncompleteError(WriteError):
    """A write stopped part-way (a failed part, a lost worker): the finished parts are kept under
    their final names, the rest is not; running the same command again resumes."""


class ModelMismatchError(WorkbenchError):
    """Embeddings of the wrong width (or shape) were given to a head."""


class EncoderError(WorkbenchError):
    """A model could not be built or its weights could not be obtained."""


class CheckpointError(EncoderError):
    """A checkpoint file is missing, truncated, not a checkpoint, or unsafe to load."""


class HeadFileError(WorkbenchError):
    """A head's weight file is missing, truncated, or not what it should be."""


class HeadFetchError(HeadFileError):
    """A head file is not in the heads folder and could not be fetched (offline, no network, a mirror
    without it); the message says which file to place where, and its upstream address."""


class HeadChecksumError(HeadFileError):
    """A fetched head file's size or sha256 differs from its pinned value: it was refused and nothing
    of it was kept."""


class UnsafePickleError(HeadFileError):
    """A pickle named something other than what rebuilds a numpy array: refused before any of it ran."""


class BundleError(WorkbenchError):
    """A TensorFlow tensor bundle (index or data shard) is missing, truncated or malformed."""


class PromptError(WorkbenchError):
    """A prompt that cannot be turned into a vector for this collection."""


class ProjectionCancelled(WorkbenchError):
    """A projection job was cancelled before it finished (nothing of it was cached)."""


class ConfigError(WorkbenchError, ValueError):
    """A function was given an argument it cannot use (an unknown name, a value out of range). It is
    a ValueError too, so callers that catch ValueError keep working."""


class ArgumentTypeError(WorkbenchError, TypeError):
    """A function was given an argument of a type it cannot use. It is a TypeError too."""


class RowRangeError(WorkbenchError, IndexError):
    """A row id outside the collection. It is an IndexError too."""


def first_line(exc: BaseException) -> str:
    """The first line of another library's error message, printable (a parquet or zip reader's
    message may quote the damaged bytes), for a one-line error of ours."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return "".join(ch if ch.isprintable() else "?" for ch in line)
