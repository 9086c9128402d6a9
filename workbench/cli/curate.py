"""``workbench apply | diff | score``: applying a recipe (and writing what it keeps), two recipes compared,
computing score columns."""
from __future__ import annotations

import json
import sys
import time

from workbench.cli.common import (EXIT_OK, encoder_from_args, load_recipe, open_from_args, recipe_text,
                                  show_progress)
from workbench.errors import WorkbenchError


def cmd_apply(args) -> int:
    from workbench.curation.apply import apply_and_export
    from workbench.engine import make_engine
    from workbench.export.rowsfile import parse_formats
    from workbench.io.staging import check_destination

    t0 = time.perf_counter()
    recipe = load_recipe(args.recipe)  # a bad recipe fails here, before anything is opened or computed
    if args.dst and args.out and args.dst != args.out:
        raise WorkbenchError("give the destination once: DST or --out")
    dst = args.out or args.dst
    if not args.dry_run and not dst:
        raise WorkbenchError("give DST to write the selected rows, or --dry-run to count only")
    if args.dry_run and dst:
        raise WorkbenchError("--dry-run writes nothing: leave out DST")
    formats = parse_formats(args.format)
    c = open_from_args(args)
    if dst:
        check_destination(dst, c.source_paths, keep=False)  # inside the source, unwritable: before any work
    with make_engine(args.engine, args.workers, args.address) as engine:
        res = apply_and_export(c, recipe, dst, formats=formats, encoder=encoder_from_args(args, c),
                               cache=not args.no_cache, device=args.device, recipe_text=recipe_text(args.recipe),
                               reasons=args.reasons, rows_per_shard=args.rows_per_shard,
                               samples_per_tar=args.samples_per_tar, engine=engine, progress=show_progress(args),
                               warn=lambda w: print(f"warning: {w}", file=sys.stderr), by_cluster=args.by_cluster)
    out = {**res["report"], "seconds": round(time.perf_counter() - t0, 3)}
    if args.json:
        print(json.dumps(out))
    else:
        _print_apply(out)
    return EXIT_OK


def _print_apply(out: dict) -> None:
    print(f"{out['recipe']}: {out['kept']:,} of {out['rows']:,} rows kept, {out['removed']:,} removed")
    w = max([len(r["rule"]) for r in out["rules"]] + [4])
    print(f"  {'rule':<{w}}  {'alone':>10}  {'in order':>10}  {'remaining':>10}")
    for r in out["rules"]:
        print(f"  {r['rule']:<{w}}  {r['removed_alone']:>10,}  {r['removed_in_order']:>10,}  {r['remaining']:>10,}")
    if "clusters" in out:
        _print_clusters(out)
    if out["skipped_shards"]:
        print(f"{len(out['skipped_shards'])} broken shard(s) skipped (listed above and in the manifest)")
    if "out" not in out:
        return
    if out["already_complete"]:
        print(f"{out['out']} already holds this export (manifest.json); nothing to do")
    else:
        resumed = f" ({out['resumed_parts']} of {out['parts']} parts from an earlier run)" if out["resumed_parts"] else ""
        print(f"wrote {out['kept']:,} rows to {out['out']} as {', '.join(out['formats'])}{resumed}")
    wds = out["outputs"].get("webdataset")
    if wds and wds.get("no_image"):
        print(f"  webdataset: {wds['samples']:,} samples; {wds['no_image']:,} kept rows have no image in the source "
              "(status no_image in the tars' parquet)")


def _print_clusters(out: dict) -> None:
    share = out["removed"] / out["rows"] if out["rows"] else 0.0
    print(f"per map cluster (overall {100 * share:.1f}% removed; 95% interval; departure: the gap between the "
          "interval and the overall share, 0 when it holds it):")
    print(f"  {'cluster':>7}  {'rows':>9}  {'removed':>9}  {'share':>6}  {'interval':>13}  {'departure':>9}  label")
    for c in out["clusters"]:
        print(f"  {c['cluster']:>7}  {c['rows']:>9,}  {c['removed']:>9,}  {100 * c['removed_share']:>5.1f}%  "
              f"{100 * c['share_low']:>5.1f}-{100 * c['share_high']:>5.1f}%  {100 * c['departure']:>+8.1f}%  "
              f"{_printable(c['label'])}")


def _printable(text, width: int = 60) -> str:
    """Web text for a terminal: control characters shown as spaces, whitespace runs as one, cut at `width`."""
    if text is None:
        return ""
    s = " ".join("".join(ch if ch.isprintable() else " " for ch in str(text)).split())
    return s if len(s) <= width else s[:width - 1] + "…"


def cmd_diff(args) -> int:
    from workbench.curation.compare import compare_recipes

    ra, rb = load_recipe(args.recipe_a), load_recipe(args.recipe_b)  # bad recipes fail before anything is opened
    c = open_from_args(args)
    out = compare_recipes(c, ra, rb, sample=args.sample, seed=args.seed, encoder=encoder_from_args(args, c),
                          device=args.device, progress=show_progress(args))
    for w in out["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    if args.json:
        print(json.dumps(out))
    else:
        _print_diff(out)
    return EXIT_OK


def _print_diff(out: dict) -> None:
    a, b, n = out["a"], out["b"], out["rows"]
    print(f"A = {a['recipe']}: {a['kept']:,} of {n:,} rows kept;  B = {b['recipe']}: {b['kept']:,} kept")
    names = {"both": "kept by both", "only_a": "kept by A only", "only_b": "kept by B only", "neither": "kept by neither"}
    for key, name in names.items():
        print(f"  {name:<16} {out[key]:>10,}  {100 * out[key] / n if n else 0:5.1f}%")
    for side, counts in (("A", a), ("B", b)):
        print(f"rules of {side} ({counts['recipe']}):  alone / in order")
        for r in counts["rules"]:
            print(f"  {_printable(r['rule'], 40):<40} {r['removed_alone']:>10,} {r['removed_in_order']:>10,}")
    print(f"  {'cluster':>7}  {'rows':>9}  {'both':>9}  {'only A':>9}  {'only B':>9}  {'neither':>9}  label")
    for c in out["clusters"]:
        print(f"  {c['cluster']:>7}  {c['rows']:>9,}  {c['both']:>9,}  {c['only_a']:>9,}  {c['only_b']:>9,}  "
              f"{c['neither']:>9,}  {_printable(c['label'])}")
    caps = out.get("captions", {})
    for key, name in names.items():
        print(f"sample {name} ({len(out['samples'][key])} rows):")
        for i, r in enumerate(out["samples"][key]):
            print(f"  {r:>10}  {_printable(caps[key][i]) if key in caps else ''}")


def cmd_score(args) -> int:
    from workbench.curation.apply import score_columns
    from workbench.engine import make_engine

    c = open_from_args(args)
    with make_engine(args.engine, args.workers, args.address) as engine:
        out = score_columns(c, prompts=args.prompt or [], prompt_embeddings=args.prompt_embedding or [],
                            heads=args.head or [], zero_shot=args.zero_shot or [], language=args.language,
                            similarity=args.similarity, encoder=encoder_from_args(args, c), device=args.device,
                            cache=not args.no_cache, progress=show_progress(args), engine=engine, out=args.out)
    if args.json:
        print(json.dumps(out))
    else:
        _print_score(out)
    return EXIT_OK


def _print_score(out: dict) -> None:
    print(f"{out['source']}: {out['rows']:,} rows")
    cols = out["columns"]
    w = max([len(n) for n in cols] + [6])
    print(f"  {'column':<{w}}  {'mean':>9}  {'p1':>9}  {'p50':>9}  {'p99':>9}  {'missing':>9}")
    for name, st in cols.items():
        missing = st["nulls"] + st.get("non_finite", 0)
        if "values" in st:
            top = ", ".join(f"{k} {v:,}" for k, v in list(st["values"].items())[:4])
            print(f"  {name:<{w}}  {top}  (missing {missing:,})")
        else:
            nums = "  ".join(f"{st[k]:>9.4g}" if st[k] is not None else f"{'-':>9}" for k in ("mean", "p1", "p50", "p99"))
            print(f"  {name:<{w}}  {nums}  {missing:>9,}")
    caches = sorted({st["cache"] for st in cols.values() if st["cache"]})
    if caches:
        print("cached in " + ", ".join(caches))
    if out.get("out"):
        print(f"wrote row + {len(cols)} column(s) to {out['out']}")
