"""Read a pickled numpy array without running anything else that is in the pickle.

Q16 publishes its prompt embeddings as ``prompts.p``, a numpy array written with :mod:`pickle`. A
pickle is a program: unpickling one with the standard unpickler may call any function it names. The
:class:`ArrayUnpickler` here resolves only the globals that rebuild a plain numpy array
(``numpy.core.multiarray._reconstruct`` under either of its module names, ``numpy.ndarray``,
``numpy.dtype``); any other global the stream names is refused with
:class:`~workbench.errors.UnsafePickleError` before it is looked up, so it never runs. The result
must be a numeric ndarray, or it is refused too.
"""
from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np

from workbench.errors import UnsafePickleError

_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]  # numpy's array-rebuild function, whatever its module
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class ArrayUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds numpy arrays and nothing else (see the module docstring)."""

    def __init__(self, file, where: str | Path | None = None):
        super().__init__(file)
        self.where = where

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(f"the pickle asks for {module}.{name}; only numpy arrays are read from a "
                                    "pickle, so it was refused (nothing in it ran)", self.where) from None

    def persistent_load(self, pid):
        raise UnsafePickleError("the pickle uses persistent ids; only plain numpy arrays are read", self.where)


def load_array_pickle(data: bytes, where: str | Path | None = None) -> np.ndarray:
    """The numpy array pickled in `data` (bytes), read with :class:`ArrayUnpickler`; `where` names the
    file in errors."""
    try:
        obj = ArrayUnpickler(io.BytesIO(data), where).load()
    except UnsafePickleError:
        raise
    except Exception as exc:  # noqa: BLE001 - a damaged stream raises many kinds
        raise UnsafePickleError(f"not a readable numpy-array pickle ({type(exc).__name__}: {exc})", where) from None
    if type(obj) is not np.ndarray or obj.dtype.kind not in "fiu":
        what = f"a {obj.dtype} array" if isinstance(obj, np.ndarray) else type(obj).__name__
        raise UnsafePickleError(f"expected a numeric numpy array in the pickle, found {what}", where)
    return obj
