"""``workbench info | validate | verify | demo``: looking at collections (and building the demo one)."""
from __future__ import annotations

import json
import time

from workbench.cli.common import EXIT_OK, EXIT_PROBLEMS
from workbench.errors import WorkbenchError


def cmd_info(args) -> int:
    from workbench.io.collection import describe, open_collection

    info = open_collection(args.path, model=args.model).info()
    print(json.dumps(info) if args.json else describe(info))
    return EXIT_OK


def cmd_validate(args) -> int:
    from workbench.io.collection import open_collection
    from workbench.io.validate import validate_kinds

    c = open_collection(args.path, model=args.model)
    reports = validate_kinds(c, args.kind)
    if not reports:
        raise WorkbenchError("no embeddings to validate (metadata-only collection)", c.path)
    if args.json:
        print(json.dumps({r.kind: _validate_json(r) for r in reports}))
    else:
        for r in reports:
            print("\n".join(r.lines()))
    return EXIT_OK if all(r.ok for r in reports) else EXIT_PROBLEMS


def _validate_json(r) -> dict:
    return {"ok": r.ok, "rows": sum(s.rows for s in r.shards), "bad_rows": r.bad_rows.height,
            "not_unit_rows": r.not_unit_rows, "other_model_shards": [s.file for s in r.other_model],
            "problems": r.bad_rows.head(100).to_dicts()}


def cmd_verify(args) -> int:
    from workbench.io.verify import verify

    report = verify(args.path)
    if args.json:
        print(json.dumps({"ok": report.ok, "files_checked": report.files_checked, "problems": report.problems}))
    else:
        for p in report.problems:
            print(p)
        print(f"{'OK' if report.ok else 'FAILED'}: {report.files_checked} files checked against {args.path}/manifest.json"
              + ("" if report.ok else f", {len(report.problems)} problems"))
    return EXIT_OK if report.ok else EXIT_PROBLEMS


def cmd_demo(args) -> int:
    from workbench.demo.build import build_demo_world, summarize_world
    from workbench.io.collection import describe, open_collection

    t0 = time.perf_counter()
    print(f"Building the SYNTHETIC demo world ({args.rows:,} rows) in {args.out} ...", flush=True)
    out = build_demo_world(args.out, rows=args.rows, seed=args.seed, rows_per_shard=args.rows_per_shard,
                           progress=not args.quiet)
    built = time.perf_counter() - t0
    print(f"ready in {built:.1f} s. Opened it as a collection:\n")
    print(describe(open_collection(out).info()))
    print()
    print("\n".join(summarize_world(out)))
    print(f"\nNext: workbench apply laion400m {out} --dry-run   (the LAION-400M rules, counted)")
    print(f"      workbench apply laion2b-en {out} subset --workers 2   (write the kept rows, LAION layout)")
    print(f"      workbench neighbors {out} --text 'a dog in the snow'")
    print(f"      in Python: workbench.open_collection({str(out)!r})")
    return EXIT_OK
