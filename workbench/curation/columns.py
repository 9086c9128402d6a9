"""The columns a recipe reads, in one frame: the collection's metadata plus the score columns its
rules need (computed, or read from the score cache).

    lf, report = recipe_frame(collection, recipe)    # lazy: metadata + scores, one row per row id

:func:`recipe_scorers` says which scorers a recipe needs on a collection (each built by the kind of
the rule that asks for it); :func:`recipe_frame` computes them (or reads the cache) and appends their
columns to the metadata. :func:`workbench.curation.apply.apply`, :class:`~workbench.curation.live.Live`
and the notebook's workspace all read a recipe's columns through here.
"""
from __future__ import annotations

from pathlib import Path

import polars as pl

from workbench.curation.rules import kind_for_scorer
from workbench.errors import RecipeError
from workbench.io.schema import ROW
from workbench.scoring.compute import compute
from workbench.scoring.scorers import Scorer, SimilarityScorer


# -- the scorers a recipe needs -----------------------------------------------------------------------------------------
def scorer_for(request: dict, collection, encoder=None, base: Path | None = None, device: str = "auto") -> Scorer | None:
    """The scorer behind a rule's score request (see :meth:`workbench.curation.recipe.Rule.score_requests`):
    built by the rule kind whose :attr:`~workbench.curation.rules.base.RuleKind.scorer_names` name it;
    None when nothing needs computing (a language column the metadata already has). The request
    ``{"scorer": "similarity"}`` (no kind's: a recipe reading a similarity the metadata lacks) gives
    the image-text cosine."""
    if request["scorer"] == "similarity":
        return SimilarityScorer(request.get("column", "similarity"))
    kind = kind_for_scorer(request["scorer"])
    if kind is None:
        raise RecipeError(f"no scorer for {request['scorer']!r}")
    return kind.scorer(request, collection, encoder, base, device)


def recipe_scorers(collection, recipe, encoder=None, device: str = "auto") -> list[Scorer]:
    """The scorers a recipe needs on this collection (none for columns the metadata already has),
    each built by the kind of the rule that asks for it."""
    have = set(collection.metadata.collect_schema().names())
    base = getattr(recipe, "base", None)
    out, seen = [], set()
    for rule in recipe.rules:
        for req in rule.score_requests():
            col = req.get("column", req["scorer"])
            if col not in seen:
                seen.add(col)
                scorer = rule.spec.scorer(req, collection, encoder, base, device)
                if scorer is not None:
                    out.append(scorer)
    if "similarity" in recipe.columns() and "similarity" not in have and collection.has_text_embeddings:
        out.append(scorer_for({"scorer": "similarity", "column": "similarity"}, collection, encoder, base, device))
    return out


def recipe_frame(collection, recipe, encoder=None, cache: bool = True, progress=False, engine=None,
                 device: str = "auto", skip: set[str] | frozenset[str] = frozenset(),
                 scorers: list[Scorer] | None = None) -> tuple[pl.LazyFrame, dict]:
    """(metadata columns + the score columns `recipe`'s rules need, the compute report).

    Contract: the frame is ``collection.metadata`` with every needed scorer's columns appended in row
    order (``row`` once), read through :meth:`~workbench.io.collection.Collection.guard_reads` so a
    damaged file is named in a :class:`~workbench.errors.WorkbenchError`; lazy (nothing is read
    until collected, the scores themselves are computed here). Scorers come from
    :func:`recipe_scorers` (built on `device`, with `encoder` for text prompts), or are the given
    `scorers` when the caller has built them already; a scorer whose columns are all in `skip` (columns the caller already holds) is left
    out. `cache`, `progress` (bool or callable ``(done, total)``) and `engine` go to
    :func:`workbench.scoring.compute.compute`. The report is compute's (``{}`` when nothing was
    scored). Missing columns are not checked here: the caller knows which it can do without."""
    if scorers is None:
        scorers = recipe_scorers(collection, recipe, encoder, device)
    scorers = [s for s in scorers if set(s.schema) - set(skip)]
    lf = collection.metadata
    if not scorers:
        return lf, {}
    res = compute(collection, scorers, cache=cache, progress=progress or False, engine=engine)
    lf = collection.guard_reads(pl.concat([lf, res.frame.drop(ROW)], how="horizontal"))
    return lf, res.report
