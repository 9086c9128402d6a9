"""Applying a recipe to a collection: the scorers its rules need, the score columns computed (or read
from the cache) by :func:`workbench.scoring.compute.compute`, any scores table joined on ``row``, and
the recipe evaluated into a :class:`~workbench.curation.recipe.Selection`.

    from workbench.curation.apply import apply
    sel = apply(c, recipe)        # sel.summary(recipe), sel.reasons(), sel.mask, sel.warnings
"""
from __future__ import annotations

from pathlib import Path

import polars as pl

from workbench.curation.columns import recipe_frame, recipe_scorers, scorer_for  # noqa: F401 - scorer_for re-exported
from workbench.curation.recipe import column_ranges, evaluate, selection_warnings
from workbench.errors import RecipeError, WorkbenchError
from workbench.io.schema import ROW
from workbench.scoring.compute import compute


def join_scores(lf, scores, where=None, columns=None) -> pl.LazyFrame:
    """`lf` (``row`` + columns, one row id each) with the columns of `scores` (``row`` + score
    columns, e.g. a ``workbench score --out`` file) joined on ``row``.

    Contract: the result has `lf`'s rows in `lf`'s order (the join keeps the left order
    explicitly: polars does not unless asked), each with the scores of *its* row id; null where
    `scores` lacks the row; rows of `scores` that `lf` lacks are ignored. The order of `scores`
    never matters. Refused (:class:`WorkbenchError` naming `where`, the scores file, and the
    position in it as ``row N``, 0-based): no ``row`` column, a ``row`` column that is not
    integer, a null row id, a row id listed twice (which value is meant?). A column that both
    frames have is refused when it is in `columns` (the columns the caller reads: which one is
    meant is ambiguous), and otherwise left out of the join."""
    scores = scores.lazy()
    try:
        schema = scores.collect_schema()
        if ROW not in schema:
            raise WorkbenchError("a scores file needs a row column (as `workbench score --out` writes)", where)
        ids = scores.select(ROW).collect().to_series()
    except pl.exceptions.PolarsError as exc:
        raise WorkbenchError(f"cannot read the scores ({str(exc).splitlines()[0]})", where) from None
    first = next((i for i, v in enumerate(ids.head(1000).to_list()) if v is not None), 0)
    if not schema[ROW].is_integer():
        raise WorkbenchError(f"row id {ids[first]!r} is not an integer: the row column is {schema[ROW]}, not integer",
                             where, row=first)
    nulls = ids.is_null().arg_true()
    if len(nulls):
        raise WorkbenchError("the row id is empty (null)", where, row=int(nulls[0]))
    again = (~ids.is_first_distinct()).arg_true()
    if len(again):
        pos = int(again[0])
        before = int((ids.head(pos) == ids[pos]).arg_true()[0])
        raise WorkbenchError(f"row id {ids[pos]} is listed twice (first at row {before}): a scores file lists each "
                             "row once", where, row=pos)
    have = set(lf.collect_schema().names())
    clash = sorted(set(columns or ()) & have & set(schema.names()) - {ROW})
    if clash:
        raise WorkbenchError(f"column(s) {clash} are both in the collection and in the scores file: rename them "
                             "in the scores file", where)
    extra = [c for c in schema.names() if c != ROW and c not in have]
    right = scores.select(pl.col(ROW).cast(pl.Int64, strict=False), *extra)  # a uint64 beyond int64: no such row
    return lf.join(right, on=ROW, how="left", maintain_order="left")


def apply(collection, recipe, encoder=None, cache: bool = True, progress: bool = False, device: str = "auto",
          scores: pl.LazyFrame | None = None, engine=None):
    """Evaluate `recipe` over `collection`: metadata columns, plus the score columns its rules need
    (computed or read from cache, per shard on `engine` when given), plus any `scores` frame given
    (joined on ``row`` by :func:`join_scores`: its order does not matter, a row it lacks has null
    scores, a row id listed twice is refused)."""
    scorers = recipe_scorers(collection, recipe, encoder, device)
    lf = collection.metadata
    have = set(lf.collect_schema().names()) | {c for s in scorers for c in s.schema}
    if scores is not None:
        have |= set(scores.lazy().collect_schema().names())
    missing = sorted(recipe.columns() - have - {ROW})
    if missing:  # before any scoring work
        from workbench.curation.scoremodels import DATACOMP_MODEL_COLUMNS

        hint = ("; DataComp's score columns come with a DataComp pool (read whatever model it is opened with)"
                if set(missing) & set(DATACOMP_MODEL_COLUMNS) else "")
        raise RecipeError(f"recipe {recipe.name!r} needs column(s) {missing}, which the data lacks "
                          f"(it has: {', '.join(sorted(have))}){hint}", collection.path)
    lf, report = recipe_frame(collection, recipe, cache=cache, progress=progress, engine=engine, scorers=scorers)
    if scores is not None:  # keyed on row, in row order; duplicate row ids refused (see join_scores)
        lf = join_scores(lf, scores, columns=recipe.columns())
    needed = sorted(recipe.columns() | {ROW})
    have = set(lf.collect_schema().names())
    frame = lf.select([c for c in needed if c in have])
    sel = evaluate(frame, recipe, str(collection.path))
    sel.scores = report
    sel.warnings = selection_warnings(recipe, sel.summary(recipe), column_ranges(frame, recipe))
    return sel


def needs_text_encoder(recipe) -> bool:
    """Whether applying `recipe` embeds text prompts (and so needs a text tower): its rules' kinds say
    (:meth:`~workbench.curation.rules.base.RuleKind.needs_text_encoder`)."""
    return any(rule.spec.needs_text_encoder(q) for rule in recipe.rules for q in rule.score_requests())


# -- what the `workbench` command does between its arguments and its printing ------------------------------------------
def scores_frame(collection, scores_path=None, columns=None) -> pl.LazyFrame:
    """The collection's metadata, in row order, with the columns of the scores parquet at `scores_path`
    (``workbench score --out``) joined on ``row`` by :func:`join_scores`; just the metadata when
    `scores_path` is None.

    Contract: each row gets the scores of its own row id whatever the file's order; a row the file
    lacks gets null (never picked by sampling); rows the collection lacks are ignored; a row id
    listed twice, a null or non-integer row id is refused naming the file and the row. `columns`:
    the ones the caller reads (only these are read from the file; one the metadata has too is
    refused). A missing or damaged file, or one without ``row``, raises :class:`WorkbenchError`
    naming it."""
    lf = collection.metadata
    if not scores_path:
        return lf
    scores_path = str(scores_path)
    try:
        names = pl.scan_parquet(scores_path).collect_schema().names()
        if ROW not in names:
            raise WorkbenchError("a scores file needs a row column (as `workbench score --out` writes)", scores_path)
        wanted = names if columns is None else [ROW] + [x for x in names if x in set(columns) and x != ROW]
        extra = pl.read_parquet(scores_path, columns=wanted)  # read here: a damaged page fails with one line
    except WorkbenchError:
        raise
    except Exception as exc:  # noqa: BLE001 - polars' errors for a missing or damaged file
        raise WorkbenchError(f"cannot read the scores file ({str(exc).splitlines()[0]})", scores_path) from None
    return join_scores(lf, extra, where=scores_path, columns=columns)


def column_stats(frame: pl.DataFrame, caches: dict | None = None) -> dict:
    """Per score column of `frame` (``row`` left out): ``nulls`` and ``cache`` (its cache folder, or
    ""); numbers add ``mean``, ``p1``, ``p50``, ``p99`` over the finite values (None when there are
    none) and, for floats, ``non_finite`` (NaN and +-inf are counted, never averaged: JSON has no
    NaN); other columns add ``values``: the 10 most frequent as ``{str(value): count}``, most
    frequent first, ties by value (the same data always gives the same summary)."""
    stats = {}
    for name, dtype in frame.schema.items():
        if name == ROW:
            continue
        col = frame[name]
        st = {"nulls": int(col.null_count()), "cache": str((caches or {}).get(name) or "")}
        if dtype.is_numeric():
            q = col.drop_nulls()
            if dtype.is_float():
                st["non_finite"] = int((~q.is_finite()).sum())
                q = q.filter(q.is_finite())
            st.update({"mean": float(q.mean()) if len(q) else None,
                       **{f"p{p}": (float(q.quantile(p / 100)) if len(q) else None) for p in (1, 50, 99)}})
        else:
            vc = col.value_counts(sort=True, name="__n").sort(["__n", name], descending=[True, False], nulls_last=True)
            st["values"] = {str(k): int(v) for k, v in vc.head(10).iter_rows()}
        stats[name] = st
    return stats


def score_columns(collection, prompts=(), prompt_embeddings=(), heads=(), zero_shot=(), language: bool = False,
                  similarity: bool = False, encoder=None, device: str = "auto", cache: bool = True,
                  progress: bool = False, engine=None, out=None) -> dict:
    """Compute (or read from the cache) the score columns named by the arguments over every row, and
    summarise them: what ``workbench score`` prints.

    Columns: ``prompt_<i>`` per text in `prompts` (embedded by `encoder`), ``prompt_embedding_<i>``
    per ``.npy`` file in `prompt_embeddings`, ``head_<name>`` per head in `heads`, the zero-shot
    columns of each of `zero_shot` (``laion400m-nsfw``, ``safety``), the caption language when
    `language`, ``clip_similarity`` when `similarity`. `encoder`: the text encoder, a zero-argument
    callable giving one (called only when prompts or zero-shot scores need it), or None (the
    collection's own). Nothing asked for raises :class:`WorkbenchError` before any model is loaded.
    `out`: also write ``row`` + the columns, one line per row id ascending, to this parquet, whole
    or not at all. Returns ``{"source", "rows", "columns": column_stats(...), "scores": the compute
    report[, "out"]}``."""
    from workbench.curation.rules.head import head_column
    from workbench.io.files import write_parquet_atomic
    from workbench.models.prompts import resolve_encoder
    from workbench.scoring.scorers import HeadScorer, Laion400mScorer, LanguageScorer, PromptScorer, SafetyScorer, SimilarityScorer

    if not (prompts or prompt_embeddings or heads or zero_shot or language or similarity):
        raise WorkbenchError("nothing to score: give --prompt, --prompt-embedding, --head, --zero-shot, --language "
                             "or --similarity")
    enc = resolve_encoder(encoder) if (prompts or zero_shot) else None
    scorers = [PromptScorer(f"prompt_{i}", texts=[text], encoder=enc, device=device) for i, text in enumerate(prompts or [])]
    scorers += [PromptScorer(f"prompt_embedding_{i}", files=[f], device=device)
                for i, f in enumerate(prompt_embeddings or [])]
    scorers += [HeadScorer(head_column({"head": h}), h) for h in heads or []]
    scorers += [Laion400mScorer(enc) if z == "laion400m-nsfw" else SafetyScorer(enc) for z in zero_shot or []]
    if language:
        scorers.append(LanguageScorer())
    if similarity:
        scorers.append(SimilarityScorer("clip_similarity"))
    res = compute(collection, scorers, cache=cache, progress=progress, engine=engine)
    df = res.collect()
    if not df[ROW].is_sorted():  # compute's frame is in row order; `out` promises it explicitly
        df = df.sort(ROW)
    summary = {"source": str(collection.path), "rows": len(collection), "columns": column_stats(df, res.caches),
               "scores": res.report}
    if out:
        write_parquet_atomic(df, out)
        summary["out"] = str(out)
    return summary


def apply_and_export(collection, recipe, dst=None, *, formats=("laion",), encoder=None, cache: bool = True,
                     device: str = "auto", selection=None, recipe_text: str | None = None,
                     parameters: dict | None = None, reasons=None, rows_per_shard: int = 1_000_000,
                     samples_per_tar: int = 10_000, engine=None, progress=False, warn=None,
                     by_cluster: bool = False) -> dict:
    """Apply `recipe` to `collection` and write the kept rows to `dst`: the one path behind
    ``workbench apply`` and the notebook's export.

    Steps: the selection (`selection` when given, e.g. the notebook's live one; else :func:`apply`
    with `encoder` (an encoder, or a zero-argument callable giving one, called only when the recipe
    embeds prompts), `cache`, `device`, `engine`, `progress`); with `dst`, a selection keeping no
    row is refused (:func:`~workbench.curation.recipe.require_kept`: nothing is written); each
    warning (:attr:`Selection.warnings`) passed to `warn` as soon as it is known; `reasons`: every
    removed row and its reason written to this parquet, whole or not at all; with `dst`, the kept
    rows exported (:func:`workbench.export.exporter.export`: `formats`, `rows_per_shard`,
    `samples_per_tar`, `engine`, `progress`; an unfinished export there resumed) with the
    ``sidecars/removed.parquet`` sidecar and manifest parameters ``recipe``, ``recipe_text`` (when
    given), ``summary`` and any `parameters` (which override). `dst` None: count only.
    `by_cluster`: the report adds ``clusters``, what the recipe removes per map cluster
    (:func:`workbench.curation.impact.selection_impact`; the clusters computed or read from the cache).

    Returns ``{"report": what ``workbench apply --json`` prints less ``seconds`` (recipe, source,
    rows, kept, removed, rules, scores, score_models (which model made each score read:
    :func:`~workbench.curation.scoremodels.score_models`), skipped_shards, warnings[, clusters][, reasons][, out, formats,
    removed_rows_file, written_rows, outputs, engine, parts, resumed_parts, part_seconds,
    already_complete]), "selection": the Selection, "manifest": the written manifest or None}``."""
    from workbench.curation.recipe import require_kept
    from workbench.export.exporter import REMOVED_ROWS, export
    from workbench.io.files import write_parquet_atomic
    from workbench.models.prompts import resolve_encoder

    sel = selection
    if sel is None:
        enc = resolve_encoder(encoder) if needs_text_encoder(recipe) else None
        sel = apply(collection, recipe, encoder=enc, cache=cache, progress=progress, device=device, engine=engine)
    summary = sel.summary(recipe)
    if dst is not None:
        require_kept(summary, recipe.name, collection.path)  # nothing written: no empty "subset"
    warnings = list(getattr(sel, "warnings", None) or [])
    for w in warnings if warn is not None else ():
        warn(w)
    from workbench.curation.scoremodels import score_models

    report = {"recipe": recipe.name, "source": str(collection.path), **summary,
              "scores": getattr(sel, "scores", None) or {}, "score_models": score_models(collection, recipe),
              "skipped_shards": collection.skipped, "warnings": warnings}
    if by_cluster:
        from workbench.curation.impact import selection_impact

        report["clusters"] = selection_impact(collection, sel, cache=cache)
    if reasons:
        write_parquet_atomic(sel.reasons(), reasons)
        report["reasons"] = reasons
    manifest = None
    if dst is not None:
        formats = list(formats)
        params = {"recipe": recipe.to_dict(), **({} if recipe_text is None else {"recipe_text": recipe_text}),
                  "summary": summary, **(parameters or {})}
        res = export(collection, dst, sel.mask, formats=formats, rows_per_shard=rows_per_shard,
                     samples_per_tar=samples_per_tar, engine=engine, progress=progress, parameters=params,
                     extras={REMOVED_ROWS: lambda p: sel.reasons().write_parquet(p)})
        manifest = res.manifest
        report.update({"out": str(dst), "formats": formats, "removed_rows_file": str(Path(dst) / REMOVED_ROWS),
                       "written_rows": manifest["rows"] if "laion" in formats else None,
                       "outputs": manifest.get("outputs", {}),
                       "engine": engine.describe() if engine is not None else None, "parts": res.run["tasks"],
                       "resumed_parts": res.run["resumed"], "part_seconds": res.run.get("part_seconds"),
                       "already_complete": res.run["already_complete"]})
    return {"report": report, "selection": sel, "manifest": manifest}
