"""The ``workbench`` command: argument parsing and printing only; the work lives in the library.

Exit codes: 0 success; 1 a check ran and found problems (verify, validate); 2 bad input, a
refused operation or a usage error (one line on stderr naming the file, no traceback); 3 a write
stopped part-way (finished parts are kept: run the same command again to resume); 130 interrupted.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from .errors import IncompleteError, WorkbenchError

EXIT_OK, EXIT_PROBLEMS, EXIT_ERROR, EXIT_INCOMPLETE = 0, 1, 2, 3
ENGINE_CHOICES = ("local", "ray")  # workbench.engine.ENGINES, without importing it
REMOVED = "sidecars/removed.parquet"  # workbench.export.REMOVED_ROWS: every removed source row and its reason


def _cmd_info(args) -> int:
    from .collection import describe, open_collection

    c = open_collection(args.path, model=args.model)
    info = c.info()
    print(json.dumps(info) if args.json else describe(info))
    return EXIT_OK


def _cmd_validate(args) -> int:
    from .collection import open_collection
    from .validate import validate

    c = open_collection(args.path, model=args.model)
    kinds = ["image", "text"] if args.kind == "both" else [args.kind]
    reports = [validate(c, k) for k in kinds if (c.has_embeddings if k == "image" else c.has_text_embeddings)]
    if not reports:
        raise WorkbenchError("no embeddings to validate (metadata-only collection)", c.path)
    if args.json:
        print(json.dumps({
            r.kind: {
                "ok": r.ok,
                "rows": sum(s.rows for s in r.shards),
                "bad_rows": r.bad_rows.height,
                "not_unit_rows": r.not_unit_rows,
                "other_model_shards": [s.file for s in r.other_model],
                "problems": r.bad_rows.head(100).to_dicts(),
            } for r in reports
        }))
    else:
        for r in reports:
            print("\n".join(r.lines()))
    return EXIT_OK if all(r.ok for r in reports) else EXIT_PROBLEMS


def _cmd_verify(args) -> int:
    from .verify import verify

    report = verify(args.path)
    if args.json:
        print(json.dumps({"ok": report.ok, "files_checked": report.files_checked, "problems": report.problems}))
    else:
        for p in report.problems:
            print(p)
        print(f"{'OK' if report.ok else 'FAILED'}: {report.files_checked} files checked against {args.path}/manifest.json"
              + ("" if report.ok else f", {len(report.problems)} problems"))
    return EXIT_OK if report.ok else EXIT_PROBLEMS


def _cmd_demo(args) -> int:
    from .collection import describe, open_collection
    from .demo import build_demo_world, summarize_world

    t0 = time.perf_counter()
    print(f"Building the SYNTHETIC demo world ({args.rows:,} rows) in {args.out} ...", flush=True)
    out = build_demo_world(args.out, rows=args.rows, seed=args.seed, rows_per_shard=args.rows_per_shard,
                           progress=not args.quiet)
    built = time.perf_counter() - t0
    c = open_collection(out)
    print(f"ready in {built:.1f} s. Opened it as a collection:\n")
    print(describe(c.info()))
    print()
    print("\n".join(summarize_world(out)))
    print(f"\nNext: workbench apply laion400m {out} --dry-run   (the LAION-400M rules, counted)")
    print(f"      workbench apply laion2b-en {out} subset --workers 2   (write the kept rows, LAION layout)")
    print(f"      workbench neighbors {out} --text 'a dog in the snow'")
    print(f"      in Python: workbench.open_collection({str(out)!r})")
    return EXIT_OK


# -- scoring, recipes, neighbours ------------------------------------------------------------------
DATACOMP_MODELS = ("b32", "l14")


def _open(args):
    from .collection import open_collection

    model = getattr(args, "model", None)
    c = open_collection(args.path, model=model if model in DATACOMP_MODELS else None,
                        on_error=getattr(args, "on_error", None) or "fail")
    for s in c.skipped:  # never silently: each skipped shard is said here, and kept in the manifest
        print(f"warning: skipped shard {s['shard']}: {' '.join(s['error'].split())}", file=sys.stderr)
    return c


def _encoder(args, collection):
    """The text encoder named by --model/--pretrained (None: the collection's own, found when needed)."""
    from .prompts import text_encoder

    model = getattr(args, "model", None)
    if model is None or model in DATACOMP_MODELS:
        return None
    return text_encoder(collection, model=model, pretrained=args.pretrained, device=args.device)


def _load_recipe(spec: str):
    from pathlib import Path

    from .recipe import PRESETS, Recipe, preset

    if spec in PRESETS and not Path(spec).exists():
        return preset(spec)
    if not Path(spec).exists():
        raise WorkbenchError(f"no such recipe file, and not a preset (presets: {', '.join(PRESETS)})", spec)
    return Recipe.load(spec)


def _formats(values) -> list[str]:
    from .export import FORMATS

    out = []
    for v in values or ["laion"]:
        for f in v.split(","):
            f = f.strip()
            if f == "all":
                out += [x for x in FORMATS if x not in out]
            elif f and f not in out:
                if f not in FORMATS:
                    raise WorkbenchError(f"unknown --format {f!r} (choose from {', '.join(FORMATS)}, or all)")
                out.append(f)
    return out


def _recipe_text(spec: str) -> str:
    """The recipe verbatim, as the manifest keeps it: the file's text, or the preset's name."""
    from pathlib import Path

    p = Path(spec)
    return p.read_text() if p.is_file() else f"preset: {spec}\n"


def _cmd_apply(args) -> int:
    from pathlib import Path

    from .engine import make_engine
    from .export import check_destination, export
    from .recipe import require_kept
    from .scoring import apply, needs_text_encoder

    t0 = time.perf_counter()
    recipe = _load_recipe(args.recipe)  # a bad recipe fails here, before anything is opened or computed
    if args.dst and args.out and args.dst != args.out:
        raise WorkbenchError("give the destination once: DST or --out")
    args.out = args.out or args.dst
    if not args.dry_run and not args.out:
        raise WorkbenchError("give DST to write the selected rows, or --dry-run to count only")
    if args.dry_run and args.out:
        raise WorkbenchError("--dry-run writes nothing: leave out DST")
    formats = _formats(args.format)
    c = _open(args)
    if not args.dry_run:
        check_destination(args.out, c.source_paths, keep=False)  # inside the source, unwritable: before any work
    enc = _encoder(args, c) if needs_text_encoder(recipe) else None
    show = args.progress or (not args.quiet and sys.stderr.isatty())
    with make_engine(args.engine, args.workers, args.address) as engine:
        sel = apply(c, recipe, encoder=enc, cache=not args.no_cache, progress=show, device=args.device, engine=engine)
        if not args.dry_run:
            require_kept(sel.summary(recipe), recipe.name, c.path)  # nothing written: no empty "subset"
        for w in sel.warnings:
            print(f"warning: {w}", file=sys.stderr)
        out = {"recipe": recipe.name, "source": str(c.path), **sel.summary(recipe), "scores": sel.scores,
               "skipped_shards": c.skipped, "warnings": sel.warnings}
        if args.reasons:
            tmp = Path(args.reasons + ".partial")
            sel.reasons().write_parquet(tmp)
            tmp.replace(args.reasons)
            out["reasons"] = args.reasons
        if not args.dry_run:
            res = export(c, args.out, sel.mask, formats=formats, rows_per_shard=args.rows_per_shard,
                         samples_per_tar=args.samples_per_tar, engine=engine, progress=show,
                         parameters={"recipe": recipe.to_dict(), "recipe_text": _recipe_text(args.recipe),
                                     "summary": sel.summary(recipe)},
                         extras={REMOVED: lambda p: sel.reasons().write_parquet(p)})
            m = res.manifest
            out.update({"out": args.out, "formats": formats, "removed_rows_file": str(Path(args.out) / REMOVED),
                        "written_rows": m["rows"] if "laion" in formats else None, "outputs": m.get("outputs", {}),
                        "engine": engine.describe(), "parts": res.run["tasks"], "resumed_parts": res.run["resumed"],
                        "part_seconds": res.run.get("part_seconds"),
                        "already_complete": res.run["already_complete"]})
    out["seconds"] = round(time.perf_counter() - t0, 3)
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{recipe.name}: {out['kept']:,} of {out['rows']:,} rows kept, {out['removed']:,} removed")
        w = max([len(r["rule"]) for r in out["rules"]] + [4])
        print(f"  {'rule':<{w}}  {'alone':>10}  {'in order':>10}  {'remaining':>10}")
        for r in out["rules"]:
            print(f"  {r['rule']:<{w}}  {r['removed_alone']:>10,}  {r['removed_in_order']:>10,}  {r['remaining']:>10,}")
        if c.skipped:
            print(f"{len(c.skipped)} broken shard(s) skipped (listed above and in the manifest)")
        if not args.dry_run:
            if out["already_complete"]:
                print(f"{args.out} already holds this export (manifest.json); nothing to do")
            else:
                resumed = f" ({out['resumed_parts']} of {out['parts']} parts from an earlier run)" if out["resumed_parts"] else ""
                print(f"wrote {out['kept']:,} rows to {args.out} as {', '.join(formats)}{resumed}")
            wds = out["outputs"].get("webdataset")
            if wds and wds.get("no_image"):
                print(f"  webdataset: {wds['samples']:,} samples; {wds['no_image']:,} kept rows have no image in the source "
                      "(status no_image in the tars' parquet)")
    return EXIT_OK


def _cmd_embed(args) -> int:
    from .embed import embed
    from .engine import make_engine

    show = args.progress or (not args.quiet and sys.stderr.isatty())
    with make_engine(args.engine, args.workers, args.address) as engine:
        res = embed(args.src, args.dst, args.model, args.pretrained, device=args.device, batch_size=args.batch_size,
                    rows_per_shard=args.rows_per_shard, keep_failed=args.keep_failed, captions=args.captions,
                    decode_workers=args.decode_workers, precision=args.precision,
                    gpu_decode={"auto": "auto", "on": True, "off": False}[args.gpu_decode], engine=engine, progress=show,
                    random_weights=args.random_weights)
    m = res.manifest
    totals = m["outputs"]["embed"]
    failed = {k[len("status_"):]: v for k, v in totals.items() if k.startswith("status_") and k != "status_success" and v}
    out = {"src": args.src, "dst": args.dst, "items": totals.get("items"), "embedded": totals.get("embedded"),
           "failed": failed, "rows": m["rows"], "shards": len(m["shards"]), "dim": m["dim"], "model": m["model"],
           "random_weights": bool(m.get("random_weights")),
           **{k: res.run.get(k) for k in ("parts", "resumed", "already_complete", "images_per_s", "seconds")}}
    if out["random_weights"]:
        print(f"warning: {args.dst} holds embeddings of random weights (--random-weights): they mean nothing",
              file=sys.stderr)
    if args.json:
        print(json.dumps(out))
    else:
        if res.run.get("already_complete"):
            print(f"{args.dst} already holds this embedding run (manifest.json); nothing to do")
        n_failed = sum(failed.values())
        rate = f" ({out['images_per_s']:,.1f} images/s)" if out.get("images_per_s") else ""
        print(f"embedded {out['embedded']:,} of {out['items']:,} images into {out['shards']} shard(s) in {args.dst}{rate}")
        if n_failed:
            print(f"{n_failed:,} failed: " + ", ".join(f"{k} {v:,}" for k, v in sorted(failed.items()))
                  + (" (written with zero image embeddings; " if args.keep_failed else " (left out; ")
                  + f"each listed with its error in {args.dst}/failed/)")
    return EXIT_OK


def _read_parquet(path: str, what: str):
    """A parquet the user names (candidates, labels, rows): one clear line when it cannot be read."""
    import polars as pl

    try:
        return pl.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - polars' errors for a missing or damaged file
        raise WorkbenchError(f"cannot read the {what} ({str(exc).splitlines()[0]})", path) from None


def _with_scores(c, scores: str | None, columns=None):
    """The collection's metadata, in row order, with the columns of a scores parquet (``workbench
    score --out``) joined on ``row`` (:func:`workbench.scoring.join_scores`): each row gets the
    scores of its own row id whatever the file's order; a row the file lacks gets null (never
    picked by sampling); rows the collection lacks are ignored; a row id listed twice, a null or
    non-integer row id is refused, naming the file and the row. `columns`: the ones the command
    reads (only these are read from the file; one that the metadata has too is refused)."""
    import polars as pl

    from .scoring import join_scores

    lf = c.metadata
    if not scores:
        return lf
    try:
        names = pl.scan_parquet(scores).collect_schema().names()
        if "row" not in names:
            raise WorkbenchError("a scores file needs a row column (as `workbench score --out` writes)", scores)
        wanted = names if columns is None else ["row"] + [x for x in names if x in set(columns) and x != "row"]
        extra = pl.read_parquet(scores, columns=wanted)  # read here: a damaged page fails with one line
    except WorkbenchError:
        raise
    except Exception as exc:  # noqa: BLE001 - polars' errors for a missing or damaged file
        raise WorkbenchError(f"cannot read the scores file ({str(exc).splitlines()[0]})", scores) from None
    return join_scores(lf, extra, where=scores, columns=columns)


def _cmd_sample(args) -> int:
    from pathlib import Path

    import numpy as np
    import polars as pl

    from .sampling import sample

    c = _open(args)
    lf = _with_scores(c, args.scores, [args.by])
    have = lf.collect_schema().names()
    if args.by not in have:
        raise WorkbenchError(f"no column {args.by!r} to sample by (columns: {', '.join(sorted(have))})",
                             args.scores or c.path)
    df = lf.select(pl.col("row"), pl.col(args.by)).collect()
    col = df[args.by]
    if not col.dtype.is_numeric():
        raise WorkbenchError(f"column {args.by!r} is {col.dtype}, not a number", args.scores or c.path)
    # one score per row id, placed by row id (not by position): null, NaN and +-inf are never picked
    ids = df["row"].to_numpy()
    if len(ids) and (ids.min() < 0 or ids.max() >= len(c)):
        raise WorkbenchError(f"row ids {ids.min()}..{ids.max()} do not fit the collection's {len(c):,} rows", c.path)
    scores = np.full(len(c), np.nan)
    scores[ids] = col.cast(pl.Float64).fill_null(float("nan")).to_numpy()
    n = args.n
    if args.fraction is not None:
        import math

        if not 0 < args.fraction <= 1:
            raise WorkbenchError(f"--fraction must be in (0, 1], got {args.fraction}")
        n = math.ceil(args.fraction * int(np.isfinite(scores).sum()))
    counts = sample(scores, args.method, n, penalty=args.penalty, cap=args.cap, seed=args.seed, batch=args.batch)
    rows = np.nonzero(counts)[0]
    out = Path(args.out)
    tmp = out.with_name(out.name + ".partial")
    pl.DataFrame({"row": rows.astype(np.int64), "count": counts[rows].astype(np.int64)}).write_parquet(tmp)
    tmp.replace(out)
    res = {"source": str(c.path), "by": args.by, "method": args.method, "n": int(counts.sum()), "rows": len(c),
           "scored_rows": int(np.isfinite(scores).sum()), "distinct": int(len(rows)),
           "max_count": int(counts.max(initial=0)), "seed": args.seed, "out": str(out)}
    if args.fraction is not None:
        res["fraction"] = args.fraction
    if args.method == "soft-cap":
        res["penalty"] = args.penalty
    if args.method == "hard-cap":
        res["cap"] = args.cap
    if args.json:
        print(json.dumps(res))
    else:
        print(f"{args.method}: {res['n']:,} picks of {res['distinct']:,} distinct rows (of {len(c):,}; "
              f"most picked {res['max_count']} times) by {args.by} -> {out}")
    return EXIT_OK


def _cmd_pairs(args) -> int:
    from .preference import PairRules, make_pairs, write_pairs

    c = _open(args)
    cands = _read_parquet(args.candidates, "candidates")
    rules = PairRules(min_score=args.min_score, max_length=args.max_length, text_prompt=args.text_prompt,
                      text_max=args.text_max, min_margin=args.min_margin,
                      max_length_ratio=None if args.max_length_ratio <= 0 else args.max_length_ratio)
    rules.check()  # before a model is loaded
    enc = None
    if "embedding" not in cands.columns or args.text_prompt:  # the text tower: --model, else the collection's own
        from .prompts import text_encoder

        enc = _encoder(args, c) or text_encoder(c, device=args.device)
    res = make_pairs(c, cands, rules, encoder=enc)
    files = write_pairs(res, args.out)
    out = {**{k: v for k, v in res.counts.items() if k != "rules"}, "rules": res.counts["rules"], "files": files}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{res.counts['pairs']:,} pairs from {res.counts['candidates']:,} candidates of {res.counts['images']:,} images")
        for k, v in res.counts.items():
            if "dropped" in k or k == "images_with_text":
                print(f"  {k}: {v:,}")
        print(f"wrote {files['pairs']} and {files['jsonl']}")
    return EXIT_OK


def _cmd_audit(args) -> int:
    from .audit import keyword_table, query_unsafe

    c = _open(args)
    if not args.term and not args.query:
        raise WorkbenchError("give --term (caption keyword table) and/or --query (top-k unsafe share)")
    out = {"source": str(c.path)}
    unsafe = args.unsafe_column
    if unsafe is None and "punsafe" in c.metadata.collect_schema().names():
        unsafe = "punsafe"
    if args.term:
        out["terms"] = keyword_table(c, args.term, unsafe_column=unsafe, unsafe_threshold=args.unsafe_threshold).to_dicts()
    if args.query:
        from .prompts import text_encoder

        enc = _encoder(args, c) or text_encoder(c, device=args.device)
        out["queries"] = query_unsafe(c, args.query, enc, k=args.k, unsafe_column=unsafe,
                                      unsafe_threshold=args.unsafe_threshold).to_dicts()
    if args.json:
        print(json.dumps(out))
        return EXIT_OK
    for r in out.get("terms", []):
        share = "-" if r["explicit_share"] is None else f"{100 * r['explicit_share']:.2f}%"
        tags = ", ".join(f"{g} {r[f'tag_{g}']:,}" for g in ("UNLIKELY", "UNSURE", "NSFW") if f"tag_{g}" in r)
        print(f"{r['term']!r}: {r['rows']:,} rows, {r['explicit']:,} with an explicit keyword ({share})"
              + (f"; their NSFW tags: {tags}" if tags else "")
              + (f"; {r['unsafe']:,} with {unsafe} >= {args.unsafe_threshold}" if "unsafe" in r else ""))
    for r in out.get("queries", []):
        parts = [f"{k.replace('_share', '')} {100 * v:.0f}%" for k, v in r.items() if k.endswith("_share") and v is not None]
        print(f"top {r['k']} of {r['query']!r}: " + ", ".join(parts))
    print("keyword hits and scores are leads to look at, not labels")
    return EXIT_OK


def _cmd_mix(args) -> int:
    from pathlib import Path

    import polars as pl

    from .mixing import learn_mix

    c = _open(args)
    columns = [x.strip() for v in args.column for x in v.split(",") if x.strip()]
    lf = _with_scores(c, args.scores, columns)  # row order; each row its own scores (duplicates refused)
    have = lf.collect_schema().names()
    missing = [x for x in columns if x not in have]
    if missing:
        raise WorkbenchError(f"no column(s) {missing} (columns: {', '.join(sorted(have))})", c.path)
    if (args.labels is None) == (args.proxy is None):
        raise WorkbenchError("give --labels (row, label) or --proxy (a held-out set: row or embedding, class), one of them")
    frame = lf.select(["row"] + columns).collect()
    if args.labels is not None:
        try:
            mix = learn_mix(frame, _read_parquet(args.labels, "labels"), columns, seed=args.seed)
        except WorkbenchError as exc:  # errors about the labels table name its file
            if exc.path is not None:
                raise
            raise WorkbenchError(exc.reason, args.labels, exc.row) from None
    else:
        from .prompts import text_encoder
        from .proxymix import learn_mix_proxy, proxy_task

        held = _read_parquet(args.proxy, "held-out set")
        encoder = _encoder(args, c) or text_encoder(c)
        task = proxy_task(c, held, encoder, template=args.template, where=args.proxy)
        mix = learn_mix_proxy(c, frame, columns, task, pool=args.pool, steps=args.steps, seed=args.seed)
    out = Path(args.out)
    tmp = out.with_name(out.name + ".partial")
    pl.DataFrame({"row": frame["row"], args.name: mix.score(frame)}).write_parquet(tmp)
    tmp.replace(out)
    res = {"source": str(c.path), "column": args.name, "out": str(out), **mix.describe()}
    if args.json:
        print(json.dumps(res))
    else:
        print(f"{args.name} = " + " ".join(f"{w:+.3f} x z({col})" for col, w in res["weights"].items()) + f" {mix.bias:+.3f}")
        cv, px = mix.cv, mix.proxy
        if px:
            print(f"  proxy task: {px['heldout']:,} held-out images of {px['classes']} classes, {px['pool_rows']:,} pool rows, "
                  f"{px['steps']} steps")
            print(f"  zero-shot loss on the held-out check half ({px['check']:,} images) after one step: "
                  f"uniform weights {px['check_loss_uniform']:.4f}, mix weights {px['check_loss_mix']:.4f} "
                  f"(no step: {px['check_loss_reference']:.4f}); accuracy {100 * px['check_accuracy_uniform']:.1f}% vs "
                  f"{100 * px['check_accuracy_mix']:.1f}%")
        if "auc_mean" in cv:
            print(f"  cross-validated AUC {cv['auc_mean']:.3f} +- {cv['auc_std']:.3f} ({cv['folds']} folds, "
                  f"{cv['labelled']:,} labelled rows, {cv['positives']:,} positive)")
        print(f"  z(c) = (c - mean) / sd over the labelled rows; wrote row, {args.name} to {out}")
    return EXIT_OK


def _whole_numbers(s, what: str, path: str):
    """A rows file's ``row`` or ``count`` column as int64, or one error naming the file and the row
    (its 0-based position in the file): a null, a column that is not numbers (strings, booleans),
    a value that is not a whole number (1.5, NaN, inf)."""
    import numpy as np
    import polars as pl

    nulls = s.is_null().arg_true()
    if len(nulls):
        raise WorkbenchError(f"the {what} is empty (null)", path, row=int(nulls[0]))
    if s.dtype.is_integer():
        v = s.cast(pl.Int64, strict=False)  # a uint64 beyond int64 becomes null
        big = v.is_null().arg_true()
        if len(big):
            raise WorkbenchError(f"{what} {s[int(big[0])]} is too large", path, row=int(big[0]))
        return v.to_numpy()
    if s.dtype.is_float():
        v = s.cast(pl.Float64).to_numpy()
        bad = np.nonzero(~np.isfinite(v) | (v != np.floor(v)) | (np.abs(v) >= 2.0 ** 62))[0]
        if len(bad):
            raise WorkbenchError(f"{what} {float(v[bad[0]])!r} is not a whole number", path, row=int(bad[0]))
        return v.astype(np.int64)
    raise WorkbenchError(f"{what} {s[0]!r} is not an integer: the {s.name} column is {s.dtype}, not integer",
                         path, row=0)


def _rows_file(path: str, n: int):
    """A rows file (``row`` [, ``count``] parquet, as ``workbench sample`` writes) -> (rows, counts):
    `rows` the listed global row ids (a row listed twice without counts is written once: the file is
    a set), `counts` None, or one count per row of the collection when the file has ``count`` (each
    row written that many times; 0: not written). Row order in the file never matters. Refused with
    one line naming the file and the row (0-based position in the file): no ``row`` column, a null,
    non-integer or out-of-range row id, a null, negative or non-integer count, and, with counts, a
    row id listed twice (summing two counts of one row would hide a mistake: merge them first)."""
    import numpy as np

    picked = _read_parquet(path, "rows file")
    if "row" not in picked.columns:
        raise WorkbenchError("the rows file needs a row column (as workbench sample writes)", path)
    rows = _whole_numbers(picked["row"], "row id", path)
    bad = np.nonzero((rows < 0) | (rows >= n))[0]
    if len(bad):
        raise WorkbenchError(f"row id {rows[bad[0]]} is not in the collection (rows 0..{n - 1})", path,
                             row=int(bad[0]))
    if "count" not in picked.columns:
        return rows, None
    per = _whole_numbers(picked["count"], "count", path)
    neg = np.nonzero(per < 0)[0]
    if len(neg):
        raise WorkbenchError(f"count {per[neg[0]]} is negative", path, row=int(neg[0]))
    order = np.argsort(rows, kind="stable")
    same = np.nonzero(np.diff(rows[order]) == 0)[0]
    if len(same):
        k = np.argmin(order[same + 1])  # the earliest repeat in file order, not the lowest row id
        first, pos = int(order[same[k]]), int(order[same[k] + 1])
        raise WorkbenchError(f"row id {rows[pos]} is listed twice (first at row {first}): with a count column each "
                             "row is listed once (add the counts up first)", path, row=pos)
    counts = np.zeros(n, np.int64)
    counts[rows] = per
    return rows, counts


def _unlisted_rows(n: int, rows, counts):
    """The removed rows of an export from a rows file: every source row not written, and why."""
    import numpy as np
    import polars as pl

    listed = np.zeros(n, bool)
    listed[rows] = True
    gone = np.nonzero(~(listed if counts is None else counts > 0))[0]
    reason = np.where(listed[gone], "count 0 in rows file", "not in rows file")
    return pl.DataFrame({"row": gone.astype(np.int64), "reason": reason.tolist()},
                        schema={"row": pl.Int64, "reason": pl.Utf8})


def _cmd_export(args) -> int:
    from pathlib import Path

    from .engine import make_engine
    from .export import check_destination, export

    formats = _formats(args.format)
    c = _open(args)
    rows, counts = _rows_file(args.rows, len(c))
    if not len(rows) or (counts is not None and not counts.any()):
        raise WorkbenchError("the rows file lists no row to write (no rows, or every count 0): nothing to export",
                             args.rows)
    check_destination(args.dst, c.source_paths, keep=False)
    show = args.progress or (not args.quiet and sys.stderr.isatty())
    with make_engine(args.engine, args.workers, args.address) as engine:
        res = export(c, args.dst, None if counts is not None else rows, counts=counts, formats=formats,
                     rows_per_shard=args.rows_per_shard, samples_per_tar=args.samples_per_tar, engine=engine,
                     progress=show, parameters={"rows_file": str(Path(args.rows).resolve())},
                     extras={REMOVED: lambda p: _unlisted_rows(len(c), rows, counts).write_parquet(p)})
    m = res.manifest
    out = {"source": str(c.path), "out": args.dst, "formats": formats, "written_rows": m["rows"],
           "removed_rows_file": str(Path(args.dst) / REMOVED),
           "distinct_rows": m["parameters"].get("distinct_rows", m["parameters"]["selected_rows"]),
           "outputs": m.get("outputs", {}), "parts": res.run["tasks"], "resumed_parts": res.run["resumed"],
           "already_complete": res.run["already_complete"]}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"wrote {out['written_rows']:,} rows ({out['distinct_rows']:,} distinct) to {args.dst} as {', '.join(formats)}")
    return EXIT_OK


def _cmd_score(args) -> int:
    from .recipe import head_column
    from .scorers import HeadScorer, Laion400mScorer, LanguageScorer, PromptScorer, SafetyScorer, SimilarityScorer
    from .scoring import compute

    c = _open(args)
    enc = None
    if args.prompt or args.zero_shot:
        enc = _encoder(args, c)
    scorers = []
    for i, text in enumerate(args.prompt or []):
        scorers.append(PromptScorer(f"prompt_{i}", texts=[text], encoder=enc, device=args.device))
    for i, f in enumerate(args.prompt_embedding or []):
        scorers.append(PromptScorer(f"prompt_embedding_{i}", files=[f], device=args.device))
    for h in args.head or []:
        scorers.append(HeadScorer(head_column({"head": h}), h))
    for z in args.zero_shot or []:
        scorers.append(Laion400mScorer(enc) if z == "laion400m-nsfw" else SafetyScorer(enc))
    if args.language:
        scorers.append(LanguageScorer())
    if args.similarity:
        scorers.append(SimilarityScorer("clip_similarity"))
    if not scorers:
        raise WorkbenchError("nothing to score: give --prompt, --prompt-embedding, --head, --zero-shot, --language or --similarity")
    from .engine import make_engine

    with make_engine(args.engine, args.workers, args.address) as engine:
        res = compute(c, scorers, cache=not args.no_cache, progress=args.progress, engine=engine)
    df = res.collect()
    if not df["row"].is_sorted():  # compute's frame is in row order; --out promises it explicitly
        df = df.sort("row")
    stats = {}
    for name, dtype in df.schema.items():
        if name == "row":
            continue
        col = df[name]
        st = {"nulls": int(col.null_count()), "cache": str(res.caches.get(name) or "")}
        if dtype.is_numeric():
            q = col.drop_nulls()
            if dtype.is_float():  # NaN and +-inf are counted, not averaged (JSON has no NaN)
                st["non_finite"] = int((~q.is_finite()).sum())
                q = q.filter(q.is_finite())
            st.update({"mean": float(q.mean()) if len(q) else None,
                       **{f"p{p}": (float(q.quantile(p / 100)) if len(q) else None) for p in (1, 50, 99)}})
        else:  # most frequent first; ties by value, so the same data prints the same summary
            vc = col.value_counts(sort=True, name="__n").sort(["__n", name], descending=[True, False], nulls_last=True)
            st["values"] = {str(k): int(v) for k, v in vc.head(10).iter_rows()}
        stats[name] = st
    out = {"source": str(c.path), "rows": len(c), "columns": stats, "scores": res.report}
    if args.out:  # row + the columns, one line per row id, ascending; written whole or not at all
        from pathlib import Path

        tmp = Path(args.out).with_name(Path(args.out).name + ".partial")
        df.write_parquet(tmp)
        tmp.replace(args.out)
        out["out"] = args.out
    print(json.dumps(out) if args.json else json.dumps(out, indent=2))
    return EXIT_OK


def _query(args, c):
    import numpy as np

    from .neighbors import row_query

    given = [x for x in (args.row, args.text, args.image, args.embedding) if x is not None]
    if len(given) != 1:
        raise WorkbenchError("give exactly one of --row, --text, --image, --embedding")
    if args.row is not None:
        return row_query(c, args.row, args.kind), [args.row]
    if args.embedding is not None:
        from .prompts import load_prompt_embedding

        return load_prompt_embedding(args.embedding, c.dim), None
    if args.text is not None:
        enc = _encoder(args, c)
        if enc is None:
            from .prompts import text_encoder

            enc = text_encoder(c)
        return enc.encode_text([args.text]), None
    from .encoders import load_encoder, parse_model_spec

    if not args.model or args.model in DATACOMP_MODELS:
        raise WorkbenchError("--image needs the image tower of the collection's model: pass --model (and --pretrained)")
    name, tag = (args.model, args.pretrained) if args.pretrained else parse_model_spec(args.model)
    enc = load_encoder(name, tag, device=args.device)
    return np.asarray(enc.encode_images([args.image])), None


def _cmd_neighbors(args) -> int:
    from .neighbors import search

    c = _open(args)
    q, exclude = _query(args, c)
    index = {"auto": "auto", "exact": None}.get(args.index, args.index)
    df = search(c, q, k=args.k, kind=args.kind, index=index, nprobe=args.nprobe, exclude_rows=exclude)
    if args.json:
        print(json.dumps({"source": str(c.path), "k": args.k, "results": df.to_dicts()}, default=str))
    else:
        for r in df.iter_rows(named=True):
            cap = " ".join(str(r.get("caption") or "").split())[:90]
            print(f"{r['rank']:>3}  row {r['row']:>10}  {r['score']:.4f}  {cap}")
    return EXIT_OK


def _cmd_index(args) -> int:
    from .faissindex import build_index

    c = _open(args)
    info = build_index(c, args.out, kind=args.kind, memory_budget=args.memory_budget, factory=args.factory,
                       progress=args.progress)
    print(json.dumps(info) if args.json else f"wrote {args.out}: {json.dumps(info)}")
    return EXIT_OK


def _cmd_map(args) -> int:
    from .projection import ProjectionScorer
    from .scoring import compute

    c = _open(args)

    def progress(stage, fraction=None):
        if args.progress_json:
            print(json.dumps({"stage": stage, "fraction": fraction}), flush=True)

    t0 = time.perf_counter()
    s = ProjectionScorer(kind=args.kind, sample=args.sample, n_neighbors=args.n_neighbors, min_dist=args.min_dist,
                         seed=args.seed, place_k=args.place_k, n_epochs=args.n_epochs, progress=progress)
    res = compute(c, [s], cache=True)
    out = {"source": str(c.path), "rows": len(c), "cache": str(res.caches["map_x"]), "report": res.report["map_x"],
           "seconds": round(time.perf_counter() - t0, 3)}
    print(json.dumps({"done": True, **out}) if args.progress_json or args.json else
          f"map of {len(c):,} rows: {'read from cache' if out['report']['cached'] else 'computed'} "
          f"in {out['seconds']} s ({out['cache']})")
    return EXIT_OK


def _engine_args(s) -> None:
    s.add_argument("--engine", choices=ENGINE_CHOICES, default="local", help="where per-shard work runs (local)")
    s.add_argument("--workers", type=int, default=None, help="worker processes (local: 1; ray: the cluster's CPUs)")
    s.add_argument("--address", help="--engine ray: an existing cluster (host:port or auto); default: start a local one")


def _model_args(s) -> None:
    s.add_argument("--model", help="text/image tower: an open_clip name[/tag], or an open_clip model-config JSON; "
                                   "for DataComp pools, b32 or l14 picks the embeddings")
    s.add_argument("--pretrained", help="pretrained tag, or a local checkpoint (.pt/.pth/.bin/.safetensors)")
    s.add_argument("--device", default="auto", help="auto (cuda when present), cuda or cpu")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="workbench", description="Curation workbench for LAION-scale image-text collections.")
    p.add_argument("--version", action="version", version=f"workbench {_version()}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("info", help="layout, shards, rows, dims and columns of a collection (headers only)")
    s.add_argument("path")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.add_argument("--model", help="DataComp pools: b32 or l14 (default l14 when present)")
    s.set_defaults(func=_cmd_info)

    s = sub.add_parser("validate", help="read every embedding: NaN/inf, zero-norm, non-unit rows, foreign-model shards")
    s.add_argument("path")
    s.add_argument("--kind", choices=["image", "text", "both"], default="both")
    s.add_argument("--json", action="store_true")
    s.add_argument("--model", help="DataComp pools: b32 or l14")
    s.set_defaults(func=_cmd_validate)

    s = sub.add_parser("verify", help="re-check a written collection against its manifest.json (exit 0 only if every file matches)")
    s.add_argument("path")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_cmd_verify)

    s = sub.add_parser("demo", help="build (once) and open the SYNTHETIC demo world, and print its summary")
    s.add_argument("--out", default="demo_world", help="folder for the demo world (default: ./demo_world)")
    s.add_argument("--rows", type=int, default=100_000, help="rows (default 100,000; up to 10M)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--rows-per-shard", type=int, default=None)
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=_cmd_demo)

    s = sub.add_parser("apply", help="apply a recipe (a file or a preset) to a collection: counts, and the selected rows written out")
    s.add_argument("recipe", help="recipe file (.yaml/.json) or preset name")
    s.add_argument("path", help="the source collection")
    s.add_argument("dst", nargs="?", help="write the selected rows here, LAION layout, source order (an empty or new folder)")
    s.add_argument("--dry-run", action="store_true", help="count only; write nothing but the score cache")
    s.add_argument("--out", help="the same as DST")
    s.add_argument("--format", action="append", metavar="F[,F]",
                   help="output formats: laion (default), webdataset, img2dataset, datacomp, or all (repeatable)")
    s.add_argument("--rows-per-shard", type=int, default=1_000_000, help="rows per LAION shard and img2dataset list (1,000,000)")
    s.add_argument("--samples-per-tar", type=int, default=10_000, help="samples per webdataset tar (10,000)")
    _engine_args(s)
    s.add_argument("--on-error", choices=("fail", "skip"), default="fail",
                   help="a broken source shard fails the run (default) or is skipped, reported and listed in the manifest")
    s.add_argument("--reasons", help="write every removed row with its reason to this parquet file")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.add_argument("--no-cache", action="store_true", help="compute score columns without reading or writing the cache")
    s.add_argument("--progress", action="store_true", help="progress bars even when stderr is not a terminal")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    _model_args(s)
    s.set_defaults(func=_cmd_apply)

    s = sub.add_parser("embed", help="embed images and captions (folders, webdataset tars, a table of paths) into LAION-layout shards")
    s.add_argument("src", help="a folder of images, a folder of webdataset .tar shards, or a .parquet/.csv of image paths")
    s.add_argument("dst", help="the output folder (new or empty; an unfinished run there is resumed)")
    s.add_argument("--model", required=True, help="an open_clip model name, or a path to an open_clip model-config JSON")
    s.add_argument("--pretrained", help="an open_clip pretrained tag, or a local checkpoint (.pt/.pth/.bin/.safetensors)")
    s.add_argument("--random-weights", action="store_true",
                   help="embed with random weights (no --pretrained; for tests: the embeddings mean nothing); "
                        "recorded in the manifest")
    s.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    s.add_argument("--batch-size", type=int, default=64)
    s.add_argument("--rows-per-shard", type=int, default=1_000_000)
    s.add_argument("--captions", help="a .parquet/.csv with a path (or file name) column and a caption column")
    s.add_argument("--keep-failed", action="store_true", help="write rows for bad images too (zero image embedding, their status)")
    s.add_argument("--decode-workers", type=int, help="image-decoding processes (default: 1 on CPU, cores-1 up to 16 on CUDA)")
    s.add_argument("--precision", choices=("auto", "fp32", "fp16", "bf16"), default="auto",
                   help="auto: fp16 autocast on CUDA, fp32 on CPU")
    s.add_argument("--gpu-decode", choices=("auto", "on", "off"), default="auto",
                   help="decode JPEGs on the GPU (nvJPEG) when the device is CUDA (auto); on: the tensor path anywhere")
    _engine_args(s)
    s.add_argument("--json", action="store_true")
    s.add_argument("--progress", action="store_true", help="a progress bar (images/s) even when stderr is not a terminal")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=_cmd_embed)

    s = sub.add_parser("sample", help="sample rows by a score: top, Soft Cap or Hard Cap Sampling -> row, count parquet")
    s.add_argument("path", help="the collection")
    s.add_argument("--by", required=True, help="the score column (metadata, or from --scores)")
    s.add_argument("--method", required=True, choices=("top", "soft-cap", "hard-cap"))
    how_many = s.add_mutually_exclusive_group(required=True)
    how_many.add_argument("--n", type=int, help="picks in all (the counts sum to N)")
    how_many.add_argument("--fraction", type=float,
                          help="picks as a share of the scored rows: N = ceil(F x scored rows), 0 < F <= 1 "
                               "(with --method top, the recipe rule top_fraction's rows)")
    s.add_argument("--penalty", type=float, default=0.15, help="soft-cap: repetition penalty (0.15)")
    s.add_argument("--cap", type=int, default=15, help="hard-cap: most picks of one row (15)")
    s.add_argument("--batch", type=int, default=100_000, help="soft-cap: rows drawn per batch (100,000)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--scores", help="a parquet with row + score columns (e.g. from workbench score --out)")
    s.add_argument("--model", help="DataComp pools: b32 or l14")
    s.add_argument("--out", required=True, help="the parquet to write: row, count")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_cmd_sample)

    s = sub.add_parser("pairs", help="CLIP-DPO preference pairs: rank candidate captions per image by CLIP score")
    s.add_argument("path", help="the collection holding the images' embeddings")
    s.add_argument("candidates", help="a parquet: image (key or row id), prompt, candidate [, embedding]")
    s.add_argument("--out", required=True, help="folder for pairs.parquet, pairs.jsonl, candidates.parquet, counts.json")
    s.add_argument("--min-score", type=float, help="drop candidates below this score (100 x cosine)")
    s.add_argument("--max-length", type=int, help="drop candidates longer than this (characters)")
    s.add_argument("--text-prompt", help="a prompt that finds images containing text, e.g. 'an image with text'")
    s.add_argument("--text-max", type=float, help="drop images whose --text-prompt score is above this")
    s.add_argument("--min-margin", type=float, default=2.0, help="least score gap between chosen and rejected (2.0)")
    s.add_argument("--max-length-ratio", type=float, default=2.0, help="longer / shorter text at most (2.0; 0: off)")
    s.add_argument("--json", action="store_true")
    _model_args(s)
    s.set_defaults(func=_cmd_pairs)

    s = sub.add_parser("audit", help="the LAION-400M audit: caption terms vs explicit keywords and NSFW tags; unsafe share of a query's top-k")
    s.add_argument("path", help="the collection")
    s.add_argument("--term", action="append", help="a caption term (repeatable), e.g. desi")
    s.add_argument("--query", action="append", help="a text query (repeatable), e.g. 'beautiful'")
    s.add_argument("-k", "--k", type=int, default=100, help="top-k per query (100)")
    s.add_argument("--unsafe-column", help="a score column for 'unsafe' (default: punsafe when present)")
    s.add_argument("--unsafe-threshold", type=float, default=0.5)
    s.add_argument("--json", action="store_true")
    _model_args(s)
    s.set_defaults(func=_cmd_audit)

    s = sub.add_parser("mix", help="learn one score as a weighted mix of score columns (M-FLYT-style), from labelled "
                                   "rows or from a zero-shot proxy task")
    s.add_argument("path", help="the collection")
    s.add_argument("--column", action="append", required=True, help="a score column to mix (repeatable or comma-separated)")
    s.add_argument("--labels", help="a parquet: row, label (1 good / 0 bad): logistic regression")
    s.add_argument("--proxy", help="a parquet: class and row (rows of the collection, left out of the pool) or embedding "
                                   "(a list of floats per image): the FLYT objective on zero-shot classification")
    s.add_argument("--template", default="a photo of a {}.", help="class prompt for --proxy ({} = the class name)")
    s.add_argument("--pool", type=int, default=50_000, help="pool rows sampled for --proxy (50000)")
    s.add_argument("--steps", type=int, default=200, help="optimisation steps for --proxy (200)")
    s.add_argument("--scores", help="a parquet with row + score columns (e.g. from workbench score --out)")
    s.add_argument("--name", default="mix", help="the new column's name (mix)")
    s.add_argument("--seed", type=int, default=0)
    _model_args(s)
    s.add_argument("--out", required=True, help="the parquet to write: row + the new column")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_cmd_mix)

    s = sub.add_parser("export", help="write listed rows (a row[, count] parquet, e.g. from sample) as shards; counts repeat rows")
    s.add_argument("path", help="the source collection")
    s.add_argument("dst", help="the output folder (new or empty; an unfinished export there is resumed)")
    s.add_argument("--rows", required=True, help="a parquet with row (and count: each row written that many times)")
    s.add_argument("--format", action="append", metavar="F[,F]", help="laion (default), webdataset, img2dataset, datacomp, all")
    s.add_argument("--rows-per-shard", type=int, default=1_000_000)
    s.add_argument("--samples-per-tar", type=int, default=10_000)
    _engine_args(s)
    s.add_argument("--model", help="DataComp pools: b32 or l14")
    s.add_argument("--json", action="store_true")
    s.add_argument("--progress", action="store_true")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=_cmd_export)

    s = sub.add_parser("score", help="compute score columns over all rows (cached beside the collection) and summarise them")
    s.add_argument("path")
    s.add_argument("--prompt", action="append", help="a text prompt (repeatable)")
    s.add_argument("--prompt-embedding", action="append", help="a .npy prompt embedding (repeatable)")
    s.add_argument("--head", action="append", help="a head name or file (repeatable)")
    s.add_argument("--zero-shot", action="append", choices=["laion400m-nsfw", "safety"])
    s.add_argument("--language", action="store_true", help="caption language (fastText lid.176)")
    s.add_argument("--similarity", action="store_true", help="image-caption cosine from the embeddings")
    s.add_argument("--out", help="also write the columns (with row) to this parquet file")
    s.add_argument("--json", action="store_true")
    s.add_argument("--no-cache", action="store_true")
    s.add_argument("--progress", action="store_true")
    _model_args(s)
    _engine_args(s)
    s.set_defaults(func=_cmd_score)

    s = sub.add_parser("neighbors", help="nearest neighbours of a row, a text, an image or an embedding: top-k with scores")
    s.add_argument("path")
    s.add_argument("--row", type=int, help="a global row id (more like this row; the row itself left out)")
    s.add_argument("--text", help="a text (needs the text tower: the demo world's, or --model)")
    s.add_argument("--image", help="an image file (needs --model)")
    s.add_argument("--embedding", help="a .npy query vector")
    s.add_argument("-k", type=int, default=10)
    s.add_argument("--kind", choices=["image", "text"], default="image", help="search image or text embeddings")
    s.add_argument("--index", default="auto", help="auto (exact when small, else a built or clip-retrieval index), exact, or an index file")
    s.add_argument("--nprobe", type=int)
    s.add_argument("--json", action="store_true")
    _model_args(s)
    s.set_defaults(func=_cmd_neighbors)

    s = sub.add_parser("index", help="build a memory-mapped IVF-PQ faiss index of a collection's embeddings")
    s.add_argument("path")
    s.add_argument("--out", required=True, help="the index file to write")
    s.add_argument("--kind", choices=["image", "text"], default="image")
    s.add_argument("--memory-budget", default="2GB", help="size the index codes must fit in (e.g. 4GB)")
    s.add_argument("--factory", help="a faiss index_factory string instead of the automatic choice")
    s.add_argument("--json", action="store_true")
    s.add_argument("--progress", action="store_true")
    s.add_argument("--model", help="DataComp pools: b32 or l14")
    s.set_defaults(func=_cmd_index)

    s = sub.add_parser("map", help="compute (and cache beside the collection) the UMAP map of every row")
    s.add_argument("path")
    s.add_argument("--kind", choices=["image", "text"], default="image")
    s.add_argument("--sample", type=int, help="rows UMAP is fitted on, the rest placed (default: a fifth of the rows, "
                                              "20,000 to 50,000)")
    s.add_argument("--n-neighbors", type=int, default=15)
    s.add_argument("--min-dist", type=float, default=0.1)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--place-k", type=int, default=10)
    s.add_argument("--n-epochs", type=int)
    s.add_argument("--json", action="store_true")
    s.add_argument("--progress-json", action="store_true", help="one JSON line per progress step (for the notebook)")
    s.add_argument("--model", help="DataComp pools: b32 or l14")
    s.set_defaults(func=_cmd_map)
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        try:
            code = _main(argv)
        except SystemExit:  # argparse: --help, --version, a usage error; their text is flushed here
            _flush_stdout()
            raise
        _flush_stdout()  # a closed pipe shows here, not as a traceback at interpreter exit
        return code
    except BrokenPipeError:
        if not _stdout_closed():  # another pipe broke: an error like any other
            print("error: a pipe closed while writing (broken pipe)", file=sys.stderr)
            return EXIT_ERROR
        _stdout_to_devnull()  # `workbench ... | head`: the reader has all it wanted; not an error
        return EXIT_OK


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except IncompleteError as exc:
        print("error: " + " ".join(str(exc).split()), file=sys.stderr)
        return EXIT_INCOMPLETE
    except WorkbenchError as exc:
        print("error: " + " ".join(str(exc).split()), file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:
        raise
    except OSError as exc:
        print(f"error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _flush_stdout() -> None:
    sys.stdout.flush()


def _stdout_closed() -> bool:
    """Whether stdout is a pipe (or socket) whose reader has gone."""
    import select

    try:
        fd = sys.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # no file descriptor (captured in-process): assume it is
        return True


def _stdout_to_devnull() -> None:
    """Point stdout at /dev/null, so that what is still buffered is dropped quietly at exit (the
    standard recipe for SIGPIPE-free pipes: https://docs.python.org/3/library/signal.html#note-on-sigpipe)."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def _version() -> str:
    """The installed package's version (importlib.metadata), else the source's."""
    try:
        from importlib.metadata import version

        return version("laion-workbench")
    except Exception:  # noqa: BLE001 - not installed (a source checkout on sys.path)
        from . import __version__

        return __version__


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
