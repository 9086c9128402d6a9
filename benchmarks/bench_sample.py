"""Soft Cap Sampling (FLYT) at the issue's size: 10M picks from 10M scores, and Hard Cap / top.

Measured in the same run:
- ``workbench.papers.sampling.soft_cap(scores, n=10M, penalty=0.15, batch=100,000)`` (target < 30 s on 2
  cores): each batch is one Gumbel-top-k pass over all rows (exact sampling without replacement);
- the reference's own step (``rng.choice(N, size=batch, p=softmax(z), replace=False)``, numpy's
  sequential sampler) for one batch on the same scores, as the baseline per batch;
- ``hard_cap(n=10M, cap=15)`` and ``top(n=1M)`` for scale.
Scores: a mix of normal CLIP-like scores (mean 0.3, sd 0.05, times a temperature of 100, as FLYT's
logits) for every row.

    python benchmarks/bench_sample.py           # 10M
    python benchmarks/bench_sample.py --quick   # 1M
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import _common as C
from workbench.papers.sampling import hard_cap, soft_cap, softmax, top


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--picks", type=int, default=None, help="default: as many as rows")
    ap.add_argument("--batch", type=int, default=100_000)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json-out")
    args = ap.parse_args()
    if args.quick:
        args.rows = 1_000_000
    n = args.picks or args.rows
    C.header(f"sampling: {n:,} picks from {args.rows:,} scores")
    noise = C.OtherLoad()
    rng = np.random.default_rng(0)
    scores = (rng.normal(0.3, 0.05, args.rows) * 100).astype(np.float64)
    results: dict = {"machine": C.machine(), "rows": args.rows, "picks": n}

    t0 = time.perf_counter()
    counts = soft_cap(scores, n, 0.15, batch=args.batch, seed=0)
    t_soft = time.perf_counter() - t0
    batches = -(-n // args.batch)
    print(f"soft_cap: {t_soft:.2f} s for {batches} batches ({t_soft / batches * 1000:.0f} ms a batch); "
          f"{int((counts > 0).sum()):,} distinct rows, most picked {int(counts.max())} times  (target < 30 s)")
    results["soft_cap_s"] = t_soft

    t0 = time.perf_counter()
    np.random.default_rng(1).choice(args.rows, size=args.batch, p=softmax(scores), replace=False)
    t_ref = time.perf_counter() - t0
    print(f"baseline, the reference's step (numpy rng.choice without replacement, p=softmax): {t_ref:.2f} s for one "
          f"batch = {t_ref * batches:.0f} s for all {batches} (estimated); soft_cap is {t_ref * batches / t_soft:.1f}x faster")
    results["reference_batch_s"] = t_ref

    t0 = time.perf_counter()
    h = hard_cap(scores, n, 15, seed=0)
    t_hard = time.perf_counter() - t0
    print(f"hard_cap (cap 15): {t_hard:.2f} s; {int((h > 0).sum()):,} distinct rows, most picked {int(h.max())}")
    t0 = time.perf_counter()
    top(scores, n // 10)
    print(f"top ({n // 10:,}): {time.perf_counter() - t0:.2f} s")
    C.finish(noise, results, None if not args.json_out else __import__("pathlib").Path(args.json_out))


if __name__ == "__main__":
    main()
