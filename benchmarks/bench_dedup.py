"""Semantic near-duplicate search (`workbench.scoring.dedup.semantic_duplicates`) at 1M rows, and its recall.

Data (generated once under benchmarks/_data/, reused while the parameters match): LAION-layout
image embeddings, 512-d float16, shaped like CLIP's space (rows gather around 2,000 topic
directions plus a shared offset: same-topic cosine ~0.5, other rows ~0.2, unrelated pairs stay
below ~0.65) with planted near-duplicates: 3% of rows are `normalise(source + eta * step)`, eta in
[0, 0.33] (cosine >= 0.95; a tenth exact copies), sources drawn from the same chunk or from a pool
of earlier rows of any shard (so duplicates cross shards, and copies of copies make chains).

Measured in the same run, page cache warm:
- baseline: one streaming pass `for ch in c.iter_embeddings(normalize=True)` over the 1M rows;
- the clustered method on the 1M rows (k-means on a sample, streamed assignment, all pairs
  inside each cluster): rows/s, its cost in baseline passes, the phase split, and how many
  planted duplicates it found (nothing unplanted passes 0.94 here, so that is recall vs truth);
- on a 50,000-row collection of the same kind: the exact method (blockwise brute force, O(n^2))
  and the clustered one; recall of clustered against exact, and the speed-up.

    python benchmarks/bench_dedup.py           # 4 x 250,000 rows + 2 x 25,000 rows (~1.1 GB, kept for reuse)
    python benchmarks/bench_dedup.py --quick   # 2 x 50,000 + 2 x 5,000 rows
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import _common as C
import torch  # noqa: F401  imported up front (as in a session that has used it): not part of the timings
from workbench.io.collection import open_collection
from workbench.scoring.dedup import recall, semantic_duplicates

TOPICS = 2000
DUP_RATE = 0.03
EXACT_SHARE = 0.1
MAX_ETA = 0.33  # cosine 1/sqrt(1 + eta^2) >= 0.95
POOL = 20_000
CHUNK = 65_536


# -- data ------------------------------------------------------------------------------------------
def _unit(x: np.ndarray) -> np.ndarray:
    x /= np.sqrt(np.einsum("ij,ij->i", x, x))[:, None]
    return x


def make_dedup_world(root: Path, shards: int, rows: int, dim: int, seed: int) -> bool:
    """Write (or reuse) the collection; img_emb only, chunk by chunk through open_memmap. True if written now.

    Also writes `dup_of.npy` (int64 per row: the planted source row, or -1).
    """
    marker = root / ".complete.json"
    spec = {"shards": shards, "rows": rows, "dim": dim, "seed": seed, "topics": TOPICS, "dup_rate": DUP_RATE,
            "max_eta": MAX_ETA, "version": 2}
    if C.reuse_or_reset(root, spec):
        return False
    (root / "img_emb").mkdir(parents=True)
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    offset = _unit(rng.standard_normal((1, dim), dtype=np.float32))[0]
    topics = _unit(rng.standard_normal((TOPICS, dim), dtype=np.float32))
    pool = np.zeros((0, dim), np.float16)
    pool_rows = np.zeros(0, np.int64)
    dup_of = np.full(shards * rows, -1, np.int64)
    g = 0  # global row of the chunk start
    for s in range(shards):
        arr = np.lib.format.open_memmap(root / "img_emb" / f"img_emb_{s}.npy", mode="w+", dtype=np.float16, shape=(rows, dim))
        for start in range(0, rows, CHUNK):
            n = min(CHUNK, rows - start)
            x = rng.standard_normal((n, dim), dtype=np.float32)
            x *= np.float32(0.70 / np.sqrt(dim))
            x += np.float32(0.55) * topics[rng.integers(0, TOPICS, n)]
            x += np.float32(0.45) * offset
            x = _unit(x).astype(np.float16)
            # planted duplicates: sources in the pool of earlier rows (60%) or earlier originals of this chunk
            pos = np.sort(rng.choice(n, size=int(rng.binomial(n, DUP_RATE)), replace=False))
            originals = np.setdiff1d(np.arange(n), pos)
            from_pool = (rng.random(len(pos)) < 0.6) & (len(pool) > 0)
            earlier = np.searchsorted(originals, pos)  # originals of this chunk before each position
            pos, from_pool, earlier = (v[from_pool | (earlier > 0)] for v in (pos, from_pool, earlier))
            src_vec = np.empty((len(pos), dim), np.float32)
            src_row = np.empty(len(pos), np.int64)
            k = rng.integers(0, max(len(pool), 1), len(pos))
            src_vec[from_pool] = pool[k[from_pool]]
            src_row[from_pool] = pool_rows[k[from_pool]]
            local = ~from_pool
            pick = originals[(rng.random(local.sum()) * earlier[local]).astype(np.int64)]  # an earlier original
            src_vec[local] = x[pick]
            src_row[local] = g + pick
            step = rng.standard_normal((len(pos), dim), dtype=np.float32)
            step -= np.einsum("ij,ij->i", step, src_vec)[:, None] * src_vec  # perpendicular to the source
            step = _unit(step)
            eta = rng.uniform(0, MAX_ETA, len(pos)).astype(np.float32)
            eta[rng.random(len(pos)) < EXACT_SHARE] = 0
            x[pos] = _unit(src_vec + eta[:, None] * step).astype(np.float16)
            x[pos[eta == 0]] = src_vec[eta == 0].astype(np.float16)
            assert np.all(src_row < g + pos)  # a source is always an earlier row
            dup_of[g + pos] = src_row
            arr[start : start + n] = x
            # refresh the pool with this chunk's rows (duplicates included: copies of copies)
            take = rng.choice(n, size=min(n, POOL // 4), replace=False)
            pool = np.concatenate([pool, x[take]])[-POOL:]
            pool_rows = np.concatenate([pool_rows, g + take])[-POOL:]
            g += n
        arr.flush()
        del arr
        print(f"  wrote shard {s + 1}/{shards} ({time.perf_counter() - t0:.1f} s)", flush=True)
    np.save(root / "dup_of.npy", dup_of)
    marker.write_text(json.dumps(spec))
    return True


# -- main --------------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--rows", type=int, default=250_000, help="rows per shard of the big collection")
    ap.add_argument("--small-rows", type=int, default=25_000, help="rows per shard (2 shards) of the recall collection")
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--threshold", type=float, default=0.94)
    ap.add_argument("--probe", type=int, default=2)
    ap.add_argument("--clusters", type=int, default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--quick", action="store_true", help="2 x 50,000 + 2 x 5,000 rows: a smoke run")
    ap.add_argument("--keep", action="store_true", help="keep the generated data under benchmarks/_data/")
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args()
    if args.quick:
        args.shards, args.rows, args.small_rows = 2, 50_000, 5_000

    C.header("bench_dedup")
    noise = C.OtherLoad()
    big = C.DATA_DIR / f"dedup_{args.shards}x{args.rows}x{args.dim}"
    small = C.DATA_DIR / f"dedup_2x{args.small_rows}x{args.dim}"
    print(f"data: {big}\n      {small}")
    make_dedup_world(big, args.shards, args.rows, args.dim, seed=0)
    make_dedup_world(small, 2, args.small_rows, args.dim, seed=1)
    results: dict = {"machine": C.machine(), "rows": args.shards * args.rows, "recall_rows": 2 * args.small_rows}
    try:
        run(big, small, args, results)
    finally:
        C.finish(noise, results, args.json_out)
        if not args.keep:
            C.remove(big)
            C.remove(small)
            print("\nremoved the generated data (--keep keeps it for the next run)")
        else:
            print(f"\nkept {big} and {small} for the next run")



def run(big: Path, small: Path, args, results: dict) -> None:
    c = open_collection(big)
    n = len(c)
    C.warm_image_files(c)
    kw = dict(threshold=args.threshold, probe=args.probe, clusters=args.clusters, device=args.device)
    print(f"{n:,} rows x {c.dim} ({c.dtype}), {len(c.shards)} shards, page cache warm; threshold {args.threshold}\n")

    def line(name, seconds, rows, base=None, note=""):
        rate = rows / seconds
        r = "" if base is None else f"   {rate / base:6.3f} x baseline ({base / rate:.1f} passes)"
        print(f"{name:50s} {C.fmt_s(seconds):>9}  {rate:>11,.0f} rows/s{r}{'   ' + note if note else ''}", flush=True)
        return rate

    t0 = time.perf_counter()
    for _ in c.iter_embeddings(normalize=True):
        pass
    base_s = time.perf_counter() - t0
    base = line("baseline: iter_embeddings(normalize=True), 1 pass", base_s, n)

    t0 = time.perf_counter()
    res = semantic_duplicates(c, method="clustered", **kw)
    s = time.perf_counter() - t0
    p = res.params
    rate = line("semantic_duplicates(clustered)  [workbench]", s, n, base)
    dup_of = np.load(big / "dup_of.npy")
    planted = np.flatnonzero(dup_of >= 0)
    found = float(np.mean(~res.keep[planted]))
    extra = int(np.count_nonzero(~res.keep) - np.count_nonzero(~res.keep[planted]))
    print(f"  {p['clusters']:,} clusters (sample {p['sample']:,}, {p['kmeans']}), probe {p['probe']}, device {p['device']}, "
          f"largest cluster {p['largest_cluster']:,} rows")
    print(f"  phases: k-means {p['seconds_kmeans']:.1f} s, assign {p['seconds_assign']:.1f} s, pairs {p['seconds_pairs']:.1f} s")
    print(f"  found {res.duplicates:,} duplicates in {res.groups:,} groups ({res.pairs:,} pairs); "
          f"planted duplicate rows {len(planted):,}: {found:.4f} of them marked, {extra:,} rows marked beyond them")
    results["big"] = {"seconds": s, "rows_per_s": rate, "baseline_s": base_s, "baseline_rows_per_s": base,
                      "duplicates": res.duplicates, "pairs": res.pairs, "planted": len(planted),
                      "planted_found": found, "params": p}

    cs = open_collection(small)
    C.warm_image_files(cs)
    m = len(cs)
    print(f"\nrecall: {m:,} rows ({len(cs.shards)} shards)")
    t0 = time.perf_counter()
    ex = semantic_duplicates(cs, method="exact", threshold=args.threshold, device=args.device)
    ex_s = time.perf_counter() - t0
    line("exact (blockwise brute force, O(n^2))  [baseline]", ex_s, m)
    t0 = time.perf_counter()
    cl = semantic_duplicates(cs, method="clustered", **kw)
    cl_s = time.perf_counter() - t0
    rc = recall(cl, ex)
    line("clustered  [workbench]", cl_s, m, note=f"{ex_s / cl_s:.1f}x faster than exact")
    print(f"  exact: {ex.duplicates:,} duplicates, {ex.pairs:,} pairs; clustered: {cl.duplicates:,} duplicates, "
          f"{cl.pairs:,} pairs, {cl.params['clusters']} clusters")
    false = int(np.count_nonzero(ex.representative[cl.representative] != ex.representative))
    print(f"  recall of clustered vs exact: {rc:.4f}  [{'OK' if rc >= 0.95 else 'below 0.95'}]; "
          f"rows joined that exact does not join: {false}")
    results["recall"] = {"exact_s": ex_s, "clustered_s": cl_s, "recall": rc, "exact_duplicates": ex.duplicates,
                         "clustered_duplicates": cl.duplicates, "exact_pairs": ex.pairs, "clustered_pairs": cl.pairs}


if __name__ == "__main__":
    main()
