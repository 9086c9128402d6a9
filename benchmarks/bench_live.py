"""Threshold change -> counts + 64-bin histogram on 10M rows, once the score columns exist.

Data: an in-memory frame of --rows rows (default 10,000,000) with the columns of a typical recipe:
similarity, punsafe, pwatermark, an aesthetic score (float32, 1% nulls) and a caption length.
The recipe: caption length >= 5, similarity >= 0.28, punsafe < 0.5, pwatermark < 0.8, aesthetic >= 5.

Measured in the same run:
- baseline: re-evaluating the whole recipe with polars (`workbench.curation.recipe.evaluate`), as a
  notebook would without the live path (median of --repeat);
- `Live.set_bounds(rule, min=t)` + `Live.counts(histogram_of=rule)` for --repeat different
  thresholds of the similarity rule (median and max). Target: median under 50 ms.
The live counts are checked against `evaluate` for the last threshold.

    python benchmarks/bench_live.py
    python benchmarks/bench_live.py --rows 1000000 --repeat 10   # quick
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import polars as pl

import _common as C
from workbench.curation.live import Live
from workbench.curation.recipe import Recipe, evaluate

TARGET_S = 0.050


def make_frame(n: int, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    aest = rng.normal(5.2, 0.8, n).astype(np.float32)
    aest[rng.random(n) < 0.01] = np.nan
    return pl.DataFrame({
        "row": np.arange(n, dtype=np.int64),
        "caption_chars": rng.integers(0, 120, n).astype(np.int32),
        "similarity": rng.normal(0.30, 0.05, n).astype(np.float32),
        "punsafe": rng.beta(0.3, 8, n).astype(np.float32),
        "pwatermark": rng.beta(0.5, 5, n).astype(np.float32),
        "aesthetic": pl.Series(aest).fill_nan(None),
    })


RECIPE = {"name": "bench", "rules": [
    {"column": "caption_chars", "min": 5},
    {"column": "similarity", "min": 0.28},
    {"column": "punsafe", "below": 0.5},
    {"column": "pwatermark", "below": 0.8},
    {"column": "aesthetic", "min": 5.0},
]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args()
    C.header("bench_live")
    noise = C.OtherLoad()
    results: dict = {"machine": C.machine(), "rows": args.rows}
    try:
        f = make_frame(args.rows)
        t0 = time.perf_counter()
        live = Live(f, Recipe.from_dict(RECIPE))
        t_setup = time.perf_counter() - t0
        live.counts(histogram_of=1)  # first call: bins of the column (once) and the numba kernel load
        thresholds = np.linspace(0.20, 0.36, args.repeat)
        times = []
        for t in thresholds:
            t0 = time.perf_counter()
            live.set_bounds(1, min=float(t))
            out = live.counts(histogram_of=1)
            times.append(time.perf_counter() - t0)
        base = []
        for t in thresholds[: max(3, args.repeat // 4)]:
            r = Recipe.from_dict({**RECIPE, "rules": [RECIPE["rules"][0], {"column": "similarity", "min": float(t)},
                                                      *RECIPE["rules"][2:]]})
            t0 = time.perf_counter()
            ref = evaluate(f, r)
            base.append(time.perf_counter() - t0)
        ref = evaluate(f, Recipe.from_dict({**RECIPE, "rules": [RECIPE["rules"][0],
                                                               {"column": "similarity", "min": float(thresholds[-1])},
                                                               *RECIPE["rules"][2:]]}))
        assert out["kept"] == ref.kept, (out["kept"], ref.kept)
        assert [r["removed_in_order"] for r in out["rules"]] == ref.counts()["removed_in_order"].to_list()
        med, worst, b = float(np.median(times)), max(times), float(np.median(base))
        print(f"\nrows: {args.rows:,}; rules: {len(RECIPE['rules'])}; Live set-up {C.fmt_s(t_setup)}")
        print(f"{'measurement':<62} {'median':>9} {'max':>9}")
        print(f"{'baseline: full polars re-evaluation (evaluate)':<62} {C.fmt_s(b):>9} {C.fmt_s(max(base)):>9}")
        print(f"{'Live.set_bounds + counts + 64-bin histogram':<62} {C.fmt_s(med):>9} {C.fmt_s(worst):>9}")
        print(f"\nspeed-up over re-evaluation: {b / med:.1f}x; target median < 50 ms: "
              f"{'OK' if med < TARGET_S else 'MISSED'}  (counts checked against evaluate)")
        results.update({"median_s": med, "max_s": worst, "baseline_s": b, "setup_s": t_setup, "ok": med < TARGET_S})
    finally:
        C.finish(noise, results, args.json_out)


if __name__ == "__main__":
    main()
