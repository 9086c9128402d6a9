"""Nearest neighbours: exact search vs a naive numpy scan; an IVF-PQ index's build, latency and recall.

Data: a LAION-layout collection (default 4 shards x 250,000 rows x 512-d float16 = 1.02 GB of
image embeddings, metadata parquets with url/caption). Unlike the other benchmarks the rows are
not uniform noise (which has no neighbours worth finding and makes any index look useless): each
row is a near-duplicate group's centre plus noise, groups (Poisson sizes, mean 8) belong to topics
(~250 rows each), topics share a common direction (the "cone" of CLIP embeddings). Queries are
random rows plus noise ("another photo of the same thing"). The page cache is warmed first.

Measured in the same run, best of --repeat:
- baseline: for every shard ``np.asarray(emb, dtype=np.float32) @ q``, then ``np.argpartition``
  for the top k (what one writes in a notebook);
- ``exact_search(c, q, k)`` for one query (default chunk 262,144 rows, and 65,536), and for the
  --queries queries at once (the ground truth for recall);
- ``build_index(c, out, memory_budget=...)`` (the factory chosen from the rows, dim and budget):
  wall time, file size; ``load_index`` (memory-mapped);
- ``index_search`` one query at a time over the --queries queries at several nprobe: median
  latency and recall@k against exact; ``search(...)`` end to end (index + exact re-ranking of
  4k candidates + url/caption join), one query at a time.

    python benchmarks/bench_neighbors.py           # 1M rows (~1 GB written, deleted at the end)
    python benchmarks/bench_neighbors.py --quick   # 2 x 50,000 rows, seconds
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import _common as C
from workbench.io.collection import open_collection
from workbench.scoring import faissindex as F
from workbench.scoring import neighbors as N
# -- data ------------------------------------------------------------------------------------------
def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.sqrt(np.einsum("ij,ij->i", x, x))[:, None]


def make_clustered(root: Path, shards: int, rows: int, dim: int, seed: int = 0, chunk: int = 65_536) -> bool:
    """Write (or reuse) the structured collection at `root`; True when written now."""
    marker = root / ".complete.json"
    spec = {"kind": "clustered-v1", "shards": shards, "rows": rows, "dim": dim, "seed": seed}
    if C.reuse_or_reset(root, spec):
        return False
    (root / "img_emb").mkdir(parents=True)
    (root / "metadata").mkdir(parents=True)
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    n = shards * rows
    cone = _unit(rng.standard_normal((1, dim), dtype=np.float32))
    topics = _unit(cone + rng.standard_normal((max(n // 250, 1), dim), dtype=np.float32) / np.sqrt(dim))
    n_groups = max(n // 8, 1)
    groups = _unit(topics[rng.integers(0, len(topics), n_groups)]
                   + 0.8 * rng.standard_normal((n_groups, dim), dtype=np.float32) / np.sqrt(dim)).astype(np.float16)
    for s in range(shards):
        arr = np.lib.format.open_memmap(root / "img_emb" / f"img_emb_{s}.npy", mode="w+", dtype=np.float16, shape=(rows, dim))
        for start in range(0, rows, chunk):
            m = min(chunk, rows - start)
            g = groups[rng.integers(0, n_groups, m)].astype(np.float32)
            arr[start : start + m] = _unit(g + 0.5 * rng.standard_normal((m, dim), dtype=np.float32) / np.sqrt(dim))
        arr.flush()
        del arr
        C.write_metadata(root / "metadata" / f"metadata_{s}.parquet", s * rows, rows)
        print(f"  wrote shard {s + 1}/{shards} ({time.perf_counter() - t0:.1f} s)", flush=True)
    marker.write_text(json.dumps(spec))
    return True


# -- baseline --------------------------------------------------------------------------------------
def naive_topk(c, q: np.ndarray, k: int) -> np.ndarray:
    """The notebook way: each shard cast to float32 whole, one matvec, then top k of all scores."""
    scores = np.concatenate([np.asarray(c.embeddings(i), dtype=np.float32) @ q for i in range(len(c.shards))])
    top = np.argpartition(-scores, k)[:k]
    return top[np.argsort(-scores[top])]


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f.tolist()) & set(t.tolist())) / len(t) for f, t in zip(found, truth)]))


# -- main ------------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--rows", type=int, default=250_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--memory-budget", default="2GB")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="2 x 50,000 rows: a smoke run")
    ap.add_argument("--keep", action="store_true", help="keep the generated data under benchmarks/_data/")
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args()
    if args.quick:
        args.shards, args.rows = 2, 50_000

    C.header("bench_neighbors")
    noise = C.OtherLoad()
    root = C.DATA_DIR / f"neighbors_{args.shards}x{args.rows}x{args.dim}"
    print(f"data: {root}")
    t0 = time.perf_counter()
    made = make_clustered(root, args.shards, args.rows, args.dim)
    if made:
        print(f"generated in {time.perf_counter() - t0:.1f} s")
    results: dict = {"machine": C.machine(), "rows": args.shards * args.rows, "dim": args.dim}
    try:
        run(root, args, results)
    finally:
        C.finish(noise, results, args.json_out)
        if made and not args.keep:
            C.remove(root)
            print(f"\nremoved {root}")
        elif args.keep:
            print(f"\nkept {root}")


def run(root: Path, args, results: dict) -> None:
    import faiss
    import torch

    c = open_collection(root)
    k = args.k
    paths = [s.image.path for s in c.shards]
    gb = sum(p.stat().st_size for p in paths) / 1e9
    for p in paths:  # warm the page cache
        with open(p, "rb") as f:
            while f.read(8 << 20):
                pass
    print(f"{len(c):,} rows x {c.dim}, {gb:.2f} GB of fp16 image embeddings (page cache warm); "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads), faiss {faiss.__version__} "
          f"({faiss.omp_get_max_threads()} threads); best of {args.repeat}\n")

    rng = np.random.default_rng(1)
    qrows = np.sort(rng.choice(len(c), args.queries, replace=False))
    qs = c.take_embeddings(qrows)
    qs = _unit(qs + 0.4 * rng.standard_normal(qs.shape, dtype=np.float32) / np.sqrt(c.dim)).astype(np.float32)
    q0 = qs[0]
    m: dict = {}

    def line(name, seconds, base=None, note="", vs="baseline"):
        r = "" if base is None else f"   {base / seconds:6.2f}x faster than {vs}"
        print(f"{name:58s} {C.fmt_s(seconds):>9}{r}{'   ' + note if note else ''}", flush=True)

    # -- exact search, one query
    print("-- exact search, one query")
    base_s, _, base_top = C.best_of(lambda: naive_topk(c, q0, k), args.repeat)
    line("baseline: np.asarray(emb, float32) @ q, argpartition", base_s)
    ex_s, _, (s0, r0) = C.best_of(lambda: N.exact_search(c, q0, k=k), args.repeat)
    line("exact_search(c, q, k)  [workbench, chunk 262,144]", ex_s, base_s)
    ex64_s, _, (_, r64) = C.best_of(lambda: N.exact_search(c, q0, k=k, chunk_rows=65_536), args.repeat)
    line("exact_search(..., chunk_rows=65,536)", ex64_s, base_s)
    agree = set(base_top.tolist()) == set(r0[0].tolist()) == set(r64[0].tolist())
    print(f"  same top-{k} as the baseline: {agree}; {len(c) * c.dim * 2 / ex_s / 1e9:.2f} GB/s of fp16 scanned")
    nq_s, _, (truth_s, truth) = C.best_of(lambda: N.exact_search(c, qs, k=k), 1)
    line(f"exact_search, {args.queries} queries at once", nq_s, note=f"{C.fmt_s(nq_s / args.queries)} a query")
    m["exact"] = {"baseline_s": base_s, "exact_s": ex_s, "exact_chunk65k_s": ex64_s, "speedup": base_s / ex_s,
                  "batch_s": nq_s, "batch_queries": args.queries, "same_topk": agree}

    # -- build
    out = root / ".workbench" / "image.ivfpq.index"
    plan = F.choose_factory(len(c), c.dim, args.memory_budget)
    print(f"\n-- build_index(memory_budget={args.memory_budget!r}): {plan['factory']} (estimated "
          f"{C.fmt_mb(plan['estimated_bytes'])}), default nprobe {plan['nprobe']}")
    t0 = time.perf_counter()
    info = F.build_index(c, out, memory_budget=args.memory_budget, progress=False)
    build_s = time.perf_counter() - t0
    print(f"build_index: {C.fmt_s(build_s)} ({len(c) / build_s:,.0f} rows/s; train rows {info['train_rows']:,}); "
          f"file {C.fmt_mb(info['file_bytes'])} = {info['file_bytes'] / len(c):.1f} B a row "
          f"vs {c.dim * 2} B of fp16 embedding")
    t0 = time.perf_counter()
    idx = F.load_index(out)
    load_s = time.perf_counter() - t0
    print(f"load_index (mmap): {C.fmt_s(load_s)}")
    m["build"] = {"factory": info["factory"], "seconds": build_s, "file_bytes": info["file_bytes"],
                  "train_rows": info["train_rows"], "load_s": load_s, "nprobe_default": info["nprobe"]}

    # -- queries against the index
    print(f"\n-- index_search, one query at a time ({args.queries} queries), recall@{k} vs exact")
    nlist = info["nlist"]
    probes = sorted({p for p in (8, 16, 32, 64, 128, 256, info["nprobe"]) if p <= nlist})
    m["index"] = []
    for p in probes:
        F.index_search(idx, qs[:1], k=k, nprobe=p)  # touch the mapping once
        times, found = [], []
        for q in qs:
            t0 = time.perf_counter()
            _, r = F.index_search(idx, q, k=k, nprobe=p)
            times.append(time.perf_counter() - t0)
            found.append(r[0])
        rec = recall(np.array(found), truth)
        med = float(np.median(times))
        line(f"index_search nprobe={p:<4d}{' (default)' if p == info['nprobe'] else ''}", med, ex_s,
             note=f"recall@{k} {rec:.3f}", vs="exact_search")
        m["index"].append({"nprobe": p, "median_s": med, "recall": rec})

    print(f"\n-- search(c, q, k) end to end: index + exact re-rank of {4 * k} candidates + url/caption join")
    m["search"] = []
    for p in (info["nprobe"],):
        N.search(c, qs[0], k=k, index=out, nprobe=p)
        times, found = [], []
        for q in qs:
            t0 = time.perf_counter()
            df = N.search(c, q, k=k, index=out, nprobe=p)
            times.append(time.perf_counter() - t0)
            found.append(df["row"].to_numpy())
        rec = recall(np.array(found), truth)
        med = float(np.median(times))
        line(f"search(..., index=path, nprobe={p}), re-ranked", med, ex_s, note=f"recall@{k} {rec:.3f}",
             vs="exact_search")
        m["search"].append({"nprobe": p, "median_s": med, "recall": rec, "rerank": 4})
        times = []
        for q in qs[:10]:
            t0 = time.perf_counter()
            N.search(c, q, k=k, index=None)
            times.append(time.perf_counter() - t0)
        line("search(..., index=None): exact + join", float(np.median(times)), base_s)
        m["search_exact_s"] = float(np.median(times))
    results["measurements"] = m


if __name__ == "__main__":
    main()
