"""A full pass over all image embeddings vs a plain sequential read of the same files.

Data: a LAION-layout collection (default 8 shards x 250,000 rows x 512-d float16 = 2.05 GB of
image embeddings; shard 0 holds 2 NaN rows, 1 inf row and 1 zero row, as real dumps do). The
page cache is warmed first (every file read once), so all numbers are CPU/memory bound.

Measured, best of --repeat each, in the same run:
- baseline: sequential `readinto` of every img_emb file into one reusable 8 MiB buffer;
- `workbench.io.validate.validate(c)` (NaN/inf, zero-norm, non-unit rows, shard centroids), on all
  cores (the default) and on one thread;
- `for ch in c.iter_embeddings(normalize=True): pass`;
- both again with the numpy fallback (as without numba), which must give the same report;
printed as GB/s of stored (fp16) bytes and as ratios to the baseline (target >= 0.70).

    python benchmarks/bench_scan.py           # full size (~4.2 GB written, deleted at the end)
    python benchmarks/bench_scan.py --quick   # 2 x 50,000 rows
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import _common as C
from workbench.io import kernels
from workbench.io.collection import open_collection
from workbench.io.validate import validate

TARGET_RATIO = 0.70
BLOCK = 8 << 20


# -- baseline ------------------------------------------------------------------------------------
def sequential_read(paths: list[Path], buf: bytearray) -> int:
    mv, n = memoryview(buf), 0
    for p in paths:
        with open(p, "rb", buffering=0) as f:
            while k := f.readinto(mv):
                n += k
    return n


# -- main ------------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--rows", type=int, default=250_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="2 x 50,000 rows: a smoke run")
    ap.add_argument("--keep", action="store_true", help="keep the generated data under benchmarks/_data/")
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args()
    if args.quick:
        args.shards, args.rows = 2, 50_000

    C.header("bench_scan")
    noise = C.OtherLoad()
    root = C.DATA_DIR / f"laion_{args.shards}x{args.rows}x{args.dim}"
    print(f"data: {root}")
    made = C.make_laion(root, args.shards, args.rows, args.dim, text=True, bad_rows=True)
    results: dict = {"machine": C.machine(), "rows": args.shards * args.rows}
    try:
        run(root, args, results)
    finally:
        C.finish(noise, results, args.json_out)
        if made and not args.keep:
            C.remove(root)
            print(f"\nremoved {root}")
        elif args.keep:
            print(f"\nkept {root}")


def same_report(a, b) -> bool:
    counts = lambda r: [(x.rows, x.nonfinite, x.zero_norm, x.not_unit) for x in r.shards]  # noqa: E731
    cents = lambda r: [x.centroid_cosine or 0.0 for x in r.shards]  # noqa: E731
    return counts(a) == counts(b) and a.bad_rows.equals(b.bad_rows) and np.allclose(cents(a), cents(b), atol=1e-9)


def run(root: Path, args, results: dict) -> None:
    c = open_collection(root)
    paths = [s.image.path for s in c.shards]
    nbytes = sum(p.stat().st_size for p in paths)
    gb = nbytes / 1e9
    buf = bytearray(BLOCK)
    sequential_read(paths, buf)  # warm the page cache
    sequential_read(paths, buf)
    print(f"{len(c):,} rows, {len(paths)} img_emb files, {gb:.2f} GB (page cache warm); best of {args.repeat}\n")
    rows = []

    def record(name, seconds, base=None, note=""):
        bw = gb / seconds
        ratio = None if base is None else bw / base
        rows.append({"name": name, "s": seconds, "GB/s": bw, "ratio": ratio, "note": note})
        r = "" if ratio is None else f"   ratio {ratio:5.2f} [{'OK' if ratio >= TARGET_RATIO else 'below 0.70'}]"
        print(f"{name:52s} {C.fmt_s(seconds):>9}  {bw:6.2f} GB/s{r}{'   ' + note if note else ''}", flush=True)
        return bw

    base_s, _, n = C.best_of(lambda: sequential_read(paths, buf), args.repeat)
    assert n == nbytes
    base_bw = record("baseline: sequential readinto, 8 MiB buffer", base_s)

    t0 = time.perf_counter()
    kernels._numba()  # import numba, load (or compile and cache) the kernels
    kernels.row_stats(np.zeros((2, args.dim), np.float16))
    kernels.normalize_rows(np.zeros((2, args.dim), np.float16))
    print(f"numba kernels ready in {time.perf_counter() - t0:.2f} s (once per process; compiled code cached on disk)")

    val_s, _, report = C.best_of(lambda: validate(c), args.repeat)
    record("validate(c), all cores  [workbench]", val_s, base_bw)
    s1, _, _ = C.best_of(lambda: validate(c, threads=1), args.repeat)
    record("validate(c, threads=1)", s1, base_bw)
    it_s, _, _ = C.best_of(lambda: [None for _ in c.iter_embeddings(normalize=True)], args.repeat)
    record("iter_embeddings(normalize=True)  [workbench]", it_s, base_bw)
    bad = report.bad_rows.group_by("problem").len().sort("problem").rows()
    print(f"  validate found: {bad}, not-unit rows {report.not_unit_rows}, other-model shards {len(report.other_model)}")

    saved = kernels._numba
    kernels._numba = lambda: None  # the numpy fallback, as on a machine without numba
    try:
        s, _, rep = C.best_of(lambda: validate(c), args.repeat)
        record("validate(c), numpy fallback, all cores", s, base_bw, "same report" if same_report(report, rep) else "DIFFERS")
        s, _, _ = C.best_of(lambda: [None for _ in c.iter_embeddings(normalize=True)], args.repeat)
        record("iter_embeddings(normalize=True), numpy fallback", s, base_bw)
    finally:
        kernels._numba = saved
    results["measurements"] = rows
    results["bytes"] = nbytes


if __name__ == "__main__":
    main()
