"""Figures of the teaching notebooks: shown inline, and written as static PNGs when asked.

    from widgets.figures import save_png
    save_png(fig, "similarity_histogram", figures_dir)   # figures_dir None: just returns the figure

The PNGs in ``docs/figures/`` (shown in the README) are written this way by running the notebooks
with ``figures_dir=docs/figures`` (``python docs/make_figures.py``). plotly renders them with
kaleido, which drives a Chrome/Chromium found on the machine.
"""
from __future__ import annotations

import re
from pathlib import Path

from workbench.errors import ConfigError
from workbench.io.files import write_atomic

WIDTH, HEIGHT = 900, 450


def save_png(fig, name: str, folder: str | Path | None, width: int = WIDTH, height: int | None = None):
    """Write `fig` as ``<folder>/<name>.png`` (atomically) when `folder` is given; return `fig`."""
    if folder is None:
        return fig
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ConfigError(f"a figure name is letters, digits, _ . - only: {name!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(folder / f"{name}.png", lambda tmp: fig.write_image(
        str(tmp), format="png", width=width, height=height or fig.layout.height or HEIGHT))
    return fig
