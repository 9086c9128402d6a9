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
``progress(stage, fraction)`` is a different protocol, see :mod:`workbench.map.projection`;
:func:`stage_progress` turns a caller's argument into such a callable, :class:`StageBars` showing
one bar per stage.)
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


class StageBars:
    """A staged ``progress(stage, fraction)`` shown as one text bar per stage (0-100 %) on stderr;
    a stage reported with no fraction is shown as started. :meth:`close` ends the last bar."""

    def __init__(self, file=None):
        self.file = sys.stderr if file is None else file
        self.stage, self.bar = None, None

    def __call__(self, stage, fraction=None) -> None:
        if stage != self.stage:
            self.close(finished=True)  # a new stage: the last one is over
            from tqdm.auto import tqdm

            self.stage = stage
            self.bar = tqdm(total=100, desc=str(stage), unit="%", file=self.file,
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}]")
        if fraction is not None and self.bar is not None:
            self.bar.n = round(100 * min(max(float(fraction), 0.0), 1.0))
            self.bar.refresh()

    def close(self, finished: bool = False) -> None:
        if self.bar is not None:
            if finished:
                self.bar.n = 100
                self.bar.refresh()
            self.bar.close()
        self.stage, self.bar = None, None


def stage_progress(progress):
    """The staged callable for a caller's `progress`: itself when callable, :class:`StageBars` for a
    true value, else None."""
    if callable(progress):
        return progress
    return StageBars() if progress else None
