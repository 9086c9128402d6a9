"""The columns a recipe reads, in one frame: the collection's metadata plus the score columns its
rules need (computed, or read from the score cache).

    lf, report = recipe_frame(collection, recipe)    # lazy: metadata + scores, one row per row id
"""
from __future__ import annotations

import polars as pl

from workbench.curation.apply import recipe_scorers
from workbench.io.schema import ROW
from workbench.scoring.compute import compute


def recipe_frame(collection, recipe, encoder=None, cache: bool = True, progress=False, engine=None,
                 device: str = "auto", skip: set[str] | frozenset[str] = frozenset()) -> tuple[pl.LazyFrame, dict]:
    """(metadata columns + the score columns `recipe`'s rules need, the compute report).

    Contract: the frame is ``collection.metadata`` with every needed scorer's columns appended in row
    order (``row`` once), read through :meth:`~workbench.io.collection.Collection.guard_reads` so a
    damaged file is named in a :class:`~workbench.errors.WorkbenchError`; lazy (nothing is read
    until collected, the scores themselves are computed here). Scorers come from
    :func:`workbench.curation.apply.recipe_scorers` (built on `device`, with `encoder` for text
    prompts); a scorer whose columns are all in `skip` (columns the caller already holds) is left
    out. `cache`, `progress` (bool or callable ``(done, total)``) and `engine` go to
    :func:`workbench.scoring.compute.compute`. The report is compute's (``{}`` when nothing was
    scored). Missing columns are not checked here: the caller knows which it can do without."""
    scorers = [s for s in recipe_scorers(collection, recipe, encoder, device) if set(s.schema) - set(skip)]
    lf = collection.metadata
    if not scorers:
        return lf, {}
    res = compute(collection, scorers, cache=cache, progress=progress or False, engine=engine)
    lf = collection.guard_reads(pl.concat([lf, res.frame.drop(ROW)], how="horizontal"))
    return lf, res.report
