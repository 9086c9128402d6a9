"""`workbench info` end to end (subprocess, start-up included) and `open_collection` at 10M rows.

Part 1: a LAION-layout collection (default 8 shards x 250,000 rows x 512-d float16, image + text
embeddings, metadata parquets with url/caption/similarity) is written for real; `python -m
workbench info PATH --json` is timed as a subprocess, best of --repeat, with the child's peak RSS
(its own ru_maxrss from wait4). Baseline in the same run: `python -c "import numpy, polars,
pyarrow.parquet"`, the imports any such command pays. Targets: < 3 s, < 400 MB.

Part 2: `open_collection` + `len()` in-process on 10 shards x 1,000,000 rows x 512 fp16 (10M
rows). The .npy files are sparse (valid header, then a hole to the full size: the open path reads
headers only, and `du` shows ~nothing on disk); the metadata parquets are real, 1M rows each.
Baseline: reading the same headers directly (numpy's npy header parser + pyarrow parquet footers).
Target: < 1 s. `.info()` is timed too, and `workbench info --json` on it as a subprocess.

    python benchmarks/bench_info.py            # full size (~4.2 GB written, deleted at the end)
    python benchmarks/bench_info.py --quick    # small, seconds
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import _common as C

TARGET_INFO_S = 3.0
TARGET_INFO_RSS = 400 * C.MB
TARGET_OPEN_S = 1.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--rows", type=int, default=250_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--big-shards", type=int, default=10)
    ap.add_argument("--big-rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3, help="timed repetitions; the best is reported")
    ap.add_argument("--quick", action="store_true", help="2 x 20,000 rows and 3 x 100,000 (sparse): a smoke run")
    ap.add_argument("--skip-big", action="store_true", help="skip part 2 (the 10M-row open)")
    ap.add_argument("--keep", action="store_true", help="keep the generated data under benchmarks/_data/")
    ap.add_argument("--json-out", type=Path, help="also write the measurements to this JSON file")
    args = ap.parse_args()
    if args.quick:
        args.shards, args.rows, args.big_shards, args.big_rows = 2, 20_000, 3, 100_000

    C.header("bench_info")
    noise = C.OtherLoad()
    results: dict = {"machine": C.machine()}
    real = C.DATA_DIR / f"laion_{args.shards}x{args.rows}x{args.dim}"
    big = C.DATA_DIR / f"sparse_{args.big_shards}x{args.big_rows}x{args.dim}"
    made = []

    # -- data --------------------------------------------------------------------------------
    print(f"data: {real}")
    if C.make_laion(real, args.shards, args.rows, args.dim, text=True, bad_rows=True):  # same data as bench_scan
        made.append(real)
    if not args.skip_big:
        print(f"data: {big} (sparse .npy)")
        if C.make_laion(big, args.big_shards, args.big_rows, args.dim, text=True, sparse=True):
            made.append(big)
    for p in [real] + ([] if args.skip_big else [big]):
        app, alloc = C.du(p)
        print(f"  {p.name}: {app / C.GIB:.2f} GiB apparent, {alloc / C.GIB:.2f} GiB on disk")

    try:
        # -- part 1: workbench info as a subprocess ------------------------------------------
        print(f"\n-- part 1: `workbench info --json` on {args.shards} x {args.rows:,} x {args.dim} fp16 "
              f"({args.shards * args.rows:,} rows), subprocess, best of {args.repeat}")
        base = C.best_of_child([C.PYTHON, "-c", "import numpy, polars, pyarrow.parquet"], args.repeat)
        imp = C.best_of_child([C.PYTHON, "-c", "import workbench.cli.main, workbench.io.collection, workbench.io.layouts"], args.repeat)
        info = C.best_of_child([C.PYTHON, "-m", "workbench", "info", str(real), "--json"], args.repeat)
        got = json.loads(info["stdout"])
        assert got["rows"] == args.shards * args.rows and got["dim"] == args.dim, got
        ratio = info["best_s"] / base["best_s"]
        print(f"baseline  python -c 'import numpy, polars, pyarrow.parquet'  {C.fmt_s(base['best_s']):>8}  rss {C.fmt_mb(base['peak_rss'])}")
        print(f"          python -c 'import workbench.cli.main/collection/layouts' {C.fmt_s(imp['best_s']):>8}  rss {C.fmt_mb(imp['peak_rss'])}")
        print(f"measured  python -m workbench info PATH --json             {C.fmt_s(info['best_s']):>8}  rss {C.fmt_mb(info['peak_rss'])}"
              f"   (all runs: {', '.join(C.fmt_s(t) for t in info['all_s'])})")
        print(f"ratio info / import-baseline = {ratio:.2f}x   (info - baseline = {C.fmt_s(info['best_s'] - base['best_s'])})")
        print(f"vs target: time {info['best_s']:.2f} s / {TARGET_INFO_S:.0f} s = {info['best_s'] / TARGET_INFO_S:.2f}  "
              f"[{'OK' if info['best_s'] < TARGET_INFO_S else 'OVER'}];  "
              f"rss {C.fmt_mb(info['peak_rss'])} / 400 MB = {info['peak_rss'] / TARGET_INFO_RSS:.2f}  "
              f"[{'OK' if info['peak_rss'] < TARGET_INFO_RSS else 'OVER'}]")
        results["info"] = {
            "rows": args.shards * args.rows, "shards": args.shards,
            "baseline_import_s": base["best_s"], "baseline_rss": base["peak_rss"],
            "workbench_import_s": imp["best_s"], "workbench_import_rss": imp["peak_rss"],
            "info_s": info["best_s"], "info_all_s": info["all_s"], "info_rss": info["peak_rss"],
            "ratio_vs_baseline": ratio, "ratio_vs_target_time": info["best_s"] / TARGET_INFO_S,
            "ratio_vs_target_rss": info["peak_rss"] / TARGET_INFO_RSS,
        }

        # -- part 2: open_collection at 10M rows, in-process -------------------------------------
        if not args.skip_big:
            results["open"] = part2(big, args)
    finally:
        C.finish(noise, results, args.json_out)
        if args.keep:
            print(f"\nkept: {', '.join(str(p) for p in made) or '(nothing new)'}")
        else:
            for p in made:
                C.remove(p)
            print(f"\nremoved: {', '.join(str(p) for p in made) or '(nothing)'}")


def part2(big: Path, args) -> dict:
    import numpy as np
    import pyarrow.parquet as pq

    import workbench
    from workbench.io.collection import open_collection

    n = args.big_shards * args.big_rows
    reps = max(args.repeat, 5)
    print(f"\n-- part 2: open_collection + len() on {args.big_shards} x {args.big_rows:,} x {args.dim} fp16 "
          f"({n:,} rows; sparse .npy, real parquets), in-process, best of {reps}")
    npys = sorted(big.glob("*_emb/*.npy"))
    parquets = sorted((big / "metadata").glob("*.parquet"))

    def raw_headers():
        for p in npys:
            with open(p, "rb") as f:
                np.lib.format.read_magic(f)
                np.lib.format.read_array_header_1_0(f)
        return sum(pq.read_metadata(p).num_rows for p in parquets)

    def open_len():
        return len(open_collection(big))

    t0 = time.perf_counter()
    first_rows = open_len()
    first = time.perf_counter() - t0
    assert first_rows == n, first_rows
    base_s, _, base_rows = C.best_of(raw_headers, reps)
    assert base_rows == n
    open_s, open_all, _ = C.best_of(open_len, reps)

    colls = [open_collection(big) for _ in range(reps)]  # fresh objects: info() caches columns
    info_times = []
    for c in colls:
        t0 = time.perf_counter()
        d = c.info()
        info_times.append(time.perf_counter() - t0)
    assert d["rows"] == n
    info_s = min(info_times)

    print(f"baseline  read {len(npys)} npy headers + {len(parquets)} parquet footers  {C.fmt_s(base_s):>8}")
    print(f"measured  open_collection + len()  {C.fmt_s(open_s):>8}   (first call in this process: {C.fmt_s(first)})")
    print(f"          .info() on an open one   {C.fmt_s(info_s):>8}")
    print(f"ratio open / raw-headers = {open_s / base_s:.2f}x")
    print(f"vs target: open {open_s:.3f} s / {TARGET_OPEN_S:.0f} s = {open_s / TARGET_OPEN_S:.3f}  "
          f"[{'OK' if open_s < TARGET_OPEN_S else 'OVER'}];  open+info {open_s + info_s:.3f} s")

    sub = C.best_of_child([C.PYTHON, "-m", "workbench", "info", str(big), "--json"], args.repeat)
    assert json.loads(sub["stdout"])["rows"] == n
    print(f"also      python -m workbench info --json on it (subprocess)  {C.fmt_s(sub['best_s']):>8}  rss {C.fmt_mb(sub['peak_rss'])}")
    return {
        "rows": n, "shards": args.big_shards, "baseline_headers_s": base_s, "open_len_s": open_s,
        "open_len_all_s": open_all, "open_first_call_s": first, "info_s": info_s,
        "ratio_vs_baseline": open_s / base_s, "ratio_vs_target": open_s / TARGET_OPEN_S,
        "cli_info_s": sub["best_s"], "cli_info_rss": sub["peak_rss"], "workbench_version": workbench.__version__,
    }


if __name__ == "__main__":
    main()
