"""The ``workbench`` command: argument parsing and printing only; the work lives in the library.

Exit codes: 0 success; 1 a check ran and found problems (verify, validate); 2 bad input, a
refused operation or a usage error (one line on stderr naming the file, no traceback).
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from .errors import WorkbenchError

EXIT_OK, EXIT_PROBLEMS, EXIT_ERROR = 0, 1, 2


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
    print(f"\nNext: workbench info {out}   |   in Python: workbench.open_collection({str(out)!r})")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="workbench", description="Curation workbench for LAION-scale image-text collections.")
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
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except WorkbenchError as exc:
        print("error: " + " ".join(str(exc).split()), file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:
        print(f"error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
