"""The notebook map (`workbench.map.projection.project`) of 1M rows on 2 cores: time, phases, method.

Target: under 5 minutes for 1M x 512 rows at the default sample (50,000 rows fitted by UMAP, the
other 950,000 placed beside their nearest sample rows).

Data (generated under benchmarks/_data/, deleted unless --keep): LAION-layout image embeddings,
512-d float16, 4 shards x 250,000 rows, shaped like CLIP's space as in bench_dedup (a shared
offset, cosine ~0.2 between unrelated rows) with two levels of topics: 64 themes of 32 sub-topics
(same sub-topic cosine ~0.5, same theme ~0.37), so the map has structure at two scales.

Measured, page cache warm:
- baseline 1: one streaming pass ``for ch in c.iter_embeddings(normalize=True)`` over the 1M rows
  (placement has to read every row once at least);
- cold: ``project(c)`` in a fresh subprocess (numba compiles UMAP's kernels on first use: JIT
  included), its wall time from outside, its phases and the child's peak RSS;
- warm, in this process after a small warm-up fit: ``umap.UMAP(...).fit_transform`` of the same
  50,000 sample rows directly (baseline 2: the fit alone), then ``project(c)`` with its phases
  (sample gather, UMAP fit, placement) and what placement did;
- then what the notebook colours and draws the map with: ``kmeans(c)`` (default k, streamed
  assignment) and ``stratified_sample(ids, 200_000)``.

    python benchmarks/bench_umap.py            # 4 x 250,000 rows (~1 GB), ~6-8 minutes on 2 cores
    python benchmarks/bench_umap.py --quick    # 2 x 50,000 rows, sample 10,000
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

import _common as C
from workbench.map.clusters import kmeans, stratified_sample
from workbench.io.collection import open_collection
from workbench.map.projection import DEFAULT_SAMPLE, project, sample_rows

THEMES = 64
SUBTOPICS = 32  # per theme
CHUNK = 65_536
TARGET_S = 300.0


# -- data ------------------------------------------------------------------------------------------
def _unit(x: np.ndarray) -> np.ndarray:
    x /= np.sqrt(np.einsum("...j,...j->...", x, x))[..., None]
    return x


def make_umap_world(root: Path, shards: int, rows: int, dim: int, seed: int) -> bool:
    """Write (or reuse) the collection: img_emb only, chunk by chunk through open_memmap. True if written now."""
    marker = root / ".complete.json"
    spec = {"shards": shards, "rows": rows, "dim": dim, "seed": seed, "themes": THEMES, "subtopics": SUBTOPICS,
            "version": 1}
    if C.reuse_or_reset(root, spec):
        return False
    (root / "img_emb").mkdir(parents=True)
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    offset = _unit(rng.standard_normal(dim, dtype=np.float32))
    themes = _unit(rng.standard_normal((THEMES, dim), dtype=np.float32))
    subs = _unit(themes[np.repeat(np.arange(THEMES), SUBTOPICS)]
                 + np.float32(0.9) * _unit(rng.standard_normal((THEMES * SUBTOPICS, dim), dtype=np.float32)))
    for s in range(shards):
        arr = np.lib.format.open_memmap(root / "img_emb" / f"img_emb_{s}.npy", mode="w+", dtype=np.float16,
                                        shape=(rows, dim))
        for start in range(0, rows, CHUNK):
            n = min(CHUNK, rows - start)
            x = rng.standard_normal((n, dim), dtype=np.float32)
            x *= np.float32(0.70 / np.sqrt(dim))
            x += np.float32(0.55) * subs[rng.integers(0, len(subs), n)]
            x += np.float32(0.45) * offset
            arr[start:start + n] = _unit(x).astype(np.float16)
        arr.flush()
        del arr
        print(f"  wrote shard {s + 1}/{shards} ({time.perf_counter() - t0:.1f} s)", flush=True)
    marker.write_text(json.dumps(spec))
    return True


# -- the cold run (a fresh process: numba JIT included) ------------------------------------------------
_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
from workbench.map.clusters import kmeans, stratified_sample
from workbench.io.collection import open_collection
from workbench.map.projection import project
info = {}
xy = project(open_collection(sys.argv[1]), sample=int(sys.argv[2]), info=info)
info["seconds_in_process"] = time.perf_counter() - t0
import numpy as np
info["finite"] = int(np.isfinite(xy).all(axis=1).sum())
print(json.dumps(info))
"""


def _phases(info: dict) -> str:
    return (f"sample {info['seconds_sample']:.1f} s, UMAP fit {info['seconds_umap']:.1f} s, "
            f"placement {info['seconds_place']:.1f} s")


# -- main --------------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--rows", type=int, default=250_000, help="rows per shard")
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--sample", type=int, default=DEFAULT_SAMPLE)
    ap.add_argument("--quick", action="store_true", help="2 x 50,000 rows, sample 10,000: a smoke run")
    ap.add_argument("--no-cold", action="store_true", help="skip the fresh-process (JIT included) run")
    ap.add_argument("--no-fit-baseline", action="store_true", help="skip the direct UMAP fit of the sample")
    ap.add_argument("--keep", action="store_true", help="keep the generated data under benchmarks/_data/")
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args()
    if args.quick:
        args.shards, args.rows, args.sample = 2, 50_000, 10_000

    C.header("bench_umap")
    noise = C.OtherLoad()
    root = C.DATA_DIR / f"umap_{args.shards}x{args.rows}x{args.dim}"
    print(f"data: {root}")
    make_umap_world(root, args.shards, args.rows, args.dim, seed=0)
    results: dict = {"machine": C.machine(), "rows": args.shards * args.rows, "sample": args.sample}
    try:
        run(root, args, results)
    finally:
        C.finish(noise, results, args.json_out)
        if not args.keep:
            C.remove(root)
            print("\nremoved the generated data (--keep keeps it for the next run)")
        else:
            print(f"\nkept {root} for the next run")



def run(root: Path, args, results: dict) -> None:
    c = open_collection(root)
    n = len(c)
    C.warm_image_files(c)
    print(f"{n:,} rows x {c.dim} ({c.dtype}), {len(c.shards)} shards, page cache warm; sample {args.sample:,}\n")

    t0 = time.perf_counter()
    for _ in c.iter_embeddings(normalize=True):
        pass
    base_s = time.perf_counter() - t0
    print(f"{'baseline 1: iter_embeddings(normalize=True), 1 pass':58s} {C.fmt_s(base_s):>9}", flush=True)
    results["baseline_pass_s"] = base_s

    if not args.no_cold:
        wall, rss, _, out = C.run_child([C.PYTHON, "-c", _CHILD, str(root), str(args.sample)])
        info = json.loads(out.strip().splitlines()[-1])
        print(f"{'project(c), fresh process (import + numba JIT included)':58s} {C.fmt_s(wall):>9}   "
              f"peak RSS {C.fmt_mb(rss)}   [{'OK' if wall < TARGET_S else 'over'} vs {TARGET_S:.0f} s]", flush=True)
        print(f"  phases: {_phases(info)}; finite rows {info['finite']:,} of {n:,}")
        results["cold"] = {"wall_s": wall, "peak_rss": rss, **info}

    import umap

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        t0 = time.perf_counter()
        umap.UMAP(n_neighbors=15, metric="cosine", random_state=0, n_epochs=10).fit_transform(
            c.take_embeddings(np.arange(min(n, 6000))))  # > 4096 rows: the nearest-neighbour descent path too
        jit_s = time.perf_counter() - t0
    print(f"{'warm-up: a 6,000-row UMAP fit (numba JIT in this process)':58s} {C.fmt_s(jit_s):>9}", flush=True)
    results["warmup_s"] = jit_s

    if not args.no_fit_baseline:
        x = c.take_embeddings(sample_rows(c, min(args.sample, n), 0))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            t0 = time.perf_counter()
            umap.UMAP(n_neighbors=15, min_dist=0.1, metric="cosine", random_state=0, low_memory=True).fit_transform(x)
            fit_s = time.perf_counter() - t0
        del x
        print(f"{'baseline 2: umap.UMAP().fit_transform(the same sample)':58s} {C.fmt_s(fit_s):>9}", flush=True)
        results["baseline_fit_s"] = fit_s

    info: dict = {}
    t0 = time.perf_counter()
    xy = project(c, sample=args.sample, info=info)
    warm_s = time.perf_counter() - t0
    print(f"{'project(c), warm  [workbench]':58s} {C.fmt_s(warm_s):>9}   {n / warm_s:,.0f} rows/s   "
          f"[{'OK' if warm_s < TARGET_S else 'over'} vs {TARGET_S:.0f} s]")
    print(f"  phases: {_phases(info)}")
    print(f"  placement: {info['placed']:,} rows, neighbours {info['neighbours']}, place_k {info['place_k']}; "
          f"{info['placed'] / max(info['seconds_place'], 1e-9):,.0f} rows/s = "
          f"{info['seconds_place'] / base_s:.1f} baseline passes")
    if "baseline_fit_s" in results:
        over = warm_s - results["baseline_fit_s"]
        print(f"  project() beyond the bare fit of its sample: {over:.1f} s "
              f"(the map of all {n:,} rows for {warm_s / results['baseline_fit_s']:.2f}x the fit alone)")
    print(f"  finite rows: {int(np.isfinite(xy).all(axis=1).sum()):,} of {n:,}")
    results["warm"] = {"seconds": warm_s, **info}

    # what the notebook draws with the map: clusters to colour by, and a stratified subset of points
    kinfo: dict = {}
    t0 = time.perf_counter()
    ids, _ = kmeans(c, info=kinfo)
    km_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    draw = stratified_sample(ids, 200_000)
    st_s = time.perf_counter() - t0
    sizes = np.asarray(kinfo["sizes"])
    print(f"{'kmeans(c): k-means on a sample + streamed assignment':58s} {C.fmt_s(km_s):>9}   "
          f"= {km_s / base_s:.1f} baseline passes; k {kinfo['k']}, sample {kinfo['sample']:,}, "
          f"cluster sizes {sizes.min():,}..{sizes.max():,}")
    print(f"{'stratified_sample(ids, 200,000)':58s} {C.fmt_s(st_s):>9}   {len(draw):,} rows to draw")
    results["kmeans"] = {"seconds": km_s, "k": kinfo["k"], "sample": kinfo["sample"], "stratified_s": st_s}


if __name__ == "__main__":
    sys.exit(main())
