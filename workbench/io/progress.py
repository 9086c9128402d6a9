"""One progress protocol for every long-running library call.

A public function takes ``progress`` as one of:

* ``False`` / ``None``: silent;
* ``True``: a text bar on stderr (tqdm, when installed);
* a callable ``progress(done, total)``: called once at the start (``done`` = work already done,
  e.g. resumed parts) and after every step; the notebook passes one
  (``widgets.workbench.Workbench.progress_callback``).

and turns it into a bar with :func:`progress_bar`::

    bar = progress_bar(progress, total, "scoring", unit="shard")
    for ...:
        bar.update(1)
    bar.close()

The bar always has ``update(n=1)`` and ``close()``; a silent one does nothing. (The map's staged
``progress(stage, fraction)`` is a different protocol: see :mod:`workbench.map.projection`.)
"""
from __future__ import annotations

import sys
from typing import Callable


class Silent:
    """A bar that shows nothing."""

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


class CallbackBar:
    """tqdm's ``update``/``close`` for a callable ``fn(done, total)``: called with ``(initial,
    total)`` at once, then with the running total after each update."""

    def __init__(self, fn: Callable[[int, int], object], total: int, initial: int = 0):
        self.fn, self.total, self.done = fn, total, 0
        fn(0, total)
        if initial:
            self.update(initial)

    def update(self, n: int = 1) -> None:
        self.done += n
        self.fn(self.done, self.total)

    def close(self) -> None:
        pass


def progress_bar(progress, total: int, desc: str, unit: str = "it", initial: int = 0, unit_scale: bool = False,
                 file=None):
    """The bar for a caller's `progress` argument (module docstring): a :class:`CallbackBar` for a
    callable, a tqdm bar on `file` (stderr by default) for a true value, else a :class:`Silent`
    bar (also when tqdm is not installed)."""
    if callable(progress):
        return CallbackBar(progress, total, initial)
    if not progress:
        return Silent()
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm ships with the workbench's dependencies
        return Silent()
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, unit_scale=unit_scale,
                file=sys.stderr if file is None else file)
