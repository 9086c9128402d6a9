"""Placing rows on a fitted map (`workbench.map.placement`): rows/s at 10M rows, here, on local
worker processes and on a Ray cluster, with bfloat16 products against float32 products.

Data: bench_umap's world (LAION-layout 512-d float16 image embeddings with two levels of topics),
``--shards`` x ``--rows`` rows under benchmarks/_data/ (10 x 1M = 10 GB by default; kept for
reruns unless --clean). The fitted map is replaced by a fixed 2-D layout of the 50,000 sample rows
(their first two principal components): placement's cost does not depend on the positions, and
the fit itself is bench_umap's subject.

Measured, page cache warm, in one run:
- baseline: one streaming pass ``for ch in c.iter_embeddings(normalize=True)`` (placement reads
  every row once at least);
- the placer built from the sample (k-means lists), for each precision (``float32``: the products
  of the previous release; ``bfloat16``: the default where the CPU has AMX);
- placement of every other row: in this process (``Placer.place_shard`` shard by shard, as
  ``project`` does), on ``--workers`` local worker processes and on a local Ray cluster (one task
  per shard, the placer passed through its ``.npz``), each checked byte-identical to the run here;
- how far bfloat16 moves rows from where float32 puts them, in units of the layout's spread
  (median distance of the sample's positions from their mean), and how often the nearest
  neighbour differs.

With ``--cold`` the page cache is dropped (``echo 1 > /proc/sys/vm/drop_caches``: root only)
before the read pass and before each placement, so every one of them reads from disk.

    python benchmarks/bench_place.py                   # 10 x 1M rows: ~15 minutes on 2 cores (data ~3 minutes once)
    python benchmarks/bench_place.py --shards 4 --rows 250000 --no-ray
    sudo python benchmarks/bench_place.py --cold --precisions bfloat16
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

import _common as C
from bench_umap import make_umap_world
from workbench.engine import make_engine
from workbench.io.collection import open_collection
from workbench.map import placement
from workbench.map.projection import pca_2d, sample_rows
from workbench.scoring.scorecache import cache_root


def drop_page_cache() -> None:
    """Write back and drop the page cache, so that the next pass reads from disk (needs root)."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("1\n")
    except OSError as e:
        raise SystemExit(f"--cold needs root to drop the page cache: {e}") from None


def place_here(placer, c) -> tuple[np.ndarray, int, float]:
    t0 = time.perf_counter()
    out, placed = [], 0
    for i in range(len(c.shards)):
        pos, n = placer.place_shard(c, i, "image")
        out.append(pos)
        placed += n
    return np.concatenate(out), placed, time.perf_counter() - t0


def place_engine(placer, c, engine) -> tuple[np.ndarray, float]:
    t0 = time.perf_counter()
    state = placer.save(cache_root(c))
    try:
        tasks = [(c, i, "image", str(state)) for i in range(len(c.shards))]
        res = dict((tasks[j][1], r[0]) for j, r in engine.map(placement.place_task, tasks))
    finally:
        state.unlink(missing_ok=True)
    return np.concatenate([res[i] for i in range(len(c.shards))]), time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shards", type=int, default=10)
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows per shard")
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--sample", type=int, default=50_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-ray", action="store_true")
    ap.add_argument("--precisions", default="float32,bfloat16")
    ap.add_argument("--clean", action="store_true", help="delete the generated data afterwards")
    ap.add_argument("--cold", action="store_true", help="drop the page cache before each measurement (root)")
    ap.add_argument("--json-out")
    args = ap.parse_args()

    C.header("bench_place")
    noise = C.OtherLoad()
    root = C.DATA_DIR / f"umap_{args.shards}x{args.rows}x{args.dim}"
    print(f"data: {root}")
    make_umap_world(root, args.shards, args.rows, args.dim, seed=0)
    c = open_collection(root)
    n = len(c)
    cold = drop_page_cache if args.cold else (lambda: None)
    results: dict = {"machine": C.machine(), "rows": n, "sample": args.sample, "cold": args.cold,
                     "half_precision_is_fast": placement.half_precision_is_fast()}
    print(f"bfloat16 products in hardware (AMX): {results['half_precision_is_fast']}")
    try:
        cold()
        t0 = time.perf_counter()
        for _ in c.iter_embeddings(normalize=True, chunk_rows=placement.PLACE_CHUNK_ROWS):
            pass
        base = time.perf_counter() - t0
        results["read_pass_s"] = base
        print(f"{'baseline: one normalised read pass':52s} {base:7.1f} s   {n / base:>10,.0f} rows/s")
        rows = np.sort(sample_rows(c, args.sample, seed=0))
        x = c.take_embeddings(rows)
        fitted = pca_2d(x).astype(np.float32)
        spread = float(np.median(np.linalg.norm(fitted - fitted.mean(0), axis=1)))
        here = {}
        for prec in args.precisions.split(","):
            placement.PLACE_PRECISION = prec
            t0 = time.perf_counter()
            placer = placement.Placer(x, 10, 0, rows, fitted)
            build = time.perf_counter() - t0
            cold()
            pos, placed, secs = place_here(placer, c)
            here[prec] = pos
            r = {"build_s": build, "placed": placed, "here_s": secs, "here_rows_s": placed / secs,
                 "method": placer.nb.method}
            print(f"[{prec}] {placer.nb.method}; placer built in {build:.1f} s")
            print(f"  {'here (1 process)':50s} {secs:7.1f} s   {placed / secs:>10,.0f} rows/s   "
                  f"{secs / base:.1f} read passes")
            engines = [("local", args.workers)] + ([] if args.no_ray else [("ray", args.workers)])
            for kind, workers in engines:
                with make_engine(kind, workers) as engine:
                    cold()
                    other, s2 = place_engine(placer, c, engine)
                same = bool(np.array_equal(other, pos, equal_nan=True))
                r[f"{kind}_s"], r[f"{kind}_rows_s"], r[f"{kind}_identical"] = s2, placed / s2, same
                print(f"  {f'{kind} engine, {workers} workers (one task per shard)':50s} {s2:7.1f} s   "
                      f"{placed / s2:>10,.0f} rows/s   byte-identical to here: {same}")
            results[prec] = r
            del placer
        if "float32" in results and "bfloat16" in results:
            a, b = here["float32"], here["bfloat16"]
            ok = np.isfinite(a).all(axis=1) & np.isfinite(b).all(axis=1)
            gap = np.linalg.norm(a[ok] - b[ok], axis=1) / spread
            ratio = results["bfloat16"]["here_rows_s"] / results["float32"]["here_rows_s"]
            results["ratio_bf16_over_f32"] = ratio
            results["gap_median"], results["gap_p99"] = float(np.median(gap)), float(np.quantile(gap, 0.99))
            print(f"\nbfloat16 / float32 placement rate here: {ratio:.2f}x")
            print(f"bfloat16 moves a row from its float32 place by {np.median(gap):.4f} (median), "
                  f"{np.quantile(gap, 0.99):.3f} (p99) of the layout's spread")
    finally:
        C.finish(noise, results, args.json_out and C.Path(args.json_out))
        if args.clean:
            C.shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
