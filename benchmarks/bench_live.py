"""Threshold change -> counts + 64-bin histogram, once the score columns exist (10M rows; 100M with --rows).

Data: an in-memory frame of --rows rows (default 10,000,000) with the columns of a typical recipe:
similarity, punsafe, pwatermark, an aesthetic score (float32, 1% nulls) and a caption length.
The recipe: caption length >= 5, similarity >= 0.28, punsafe < 0.5, pwatermark < 0.8, aesthetic >= 5.

Measured in the same run, --repeat thresholds of the similarity rule each:
- baseline: re-evaluating the whole recipe with polars (`workbench.curation.recipe.evaluate`), as a
  notebook would without the live path;
- the one-pass path: `Live(..., tile_rows=inf)`: `set_bounds` rewrites the rule's bit in one pass,
  `counts(histogram_of=rule)` counts in a second;
- the slider tile (the default from 2M rows): the first move builds the rule's tile (reported as
  the grab), every later move is answered from it. Target (issue: 100M rows x 5 rules): median
  <= 25 ms, exact, <= 16 bytes a row beyond the score columns.
Every path's counts are checked against `evaluate` (the polars recipe) for the last threshold.

    python benchmarks/bench_live.py
    python benchmarks/bench_live.py --rows 100000000 --repeat 30
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

TARGET_S = 0.025
TARGET_BYTES = 16


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


def _recipe(t: float) -> Recipe:
    return Recipe.from_dict({**RECIPE, "rules": [RECIPE["rules"][0], {"column": "similarity", "min": float(t)},
                                                 *RECIPE["rules"][2:]]})


def _moves(live: Live, thresholds) -> tuple[list[float], dict]:
    times, out = [], {}
    for t in thresholds:
        t0 = time.perf_counter()
        live.set_bounds(1, min=float(t))
        out = live.counts(histogram_of=1)
        times.append(time.perf_counter() - t0)
    return times, out


def _check(out: dict, ref) -> None:
    assert out["kept"] == ref.kept, (out["kept"], ref.kept)
    assert [r["removed_in_order"] for r in out["rules"]] == ref.counts()["removed_in_order"].to_list()
    assert [r["removed_alone"] for r in out["rules"]] == ref.counts()["removed_alone"].to_list()


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
        score_bytes = sum(f[c].to_numpy().nbytes for c in f.columns if c != "row")
        thresholds = np.linspace(0.20, 0.36, args.repeat)
        rss0 = C.rss()
        t0 = time.perf_counter()
        live = Live(f, Recipe.from_dict(RECIPE))
        t_setup = time.perf_counter() - t0
        live.counts(histogram_of=1)  # bins of the column (once) and the numba kernel load
        t0 = time.perf_counter()
        live.set_bounds(1, min=0.30)  # the grab: builds the similarity rule's tile
        live.counts(histogram_of=1)
        t_grab = time.perf_counter() - t0
        tiled, out_t = _moves(live, thresholds)
        extra = live._packed.nbytes + (live._tile.nbytes() if live._tile else 0) + \
            sum(b.nbytes for b, _ in live._bins.values()) + \
            sum(v.nbytes for c, v in live._values.items() if f[c].dtype != (pl.Float32 if v.dtype == np.float32 else pl.Float64))
        rss_live = C.rss() - rss0
        ref = evaluate(f, _recipe(thresholds[-1]))
        _check(out_t, ref)
        onepass = Live(f, Recipe.from_dict(RECIPE), tile_rows=10**15)
        onepass.counts(histogram_of=1)
        plain, out_p = _moves(onepass, thresholds)
        _check(out_p, ref)
        del onepass
        base = []
        for t in thresholds[: max(3, args.repeat // 4)]:
            r = _recipe(t)
            t0 = time.perf_counter()
            evaluate(f, r)
            base.append(time.perf_counter() - t0)
        med, worst, b, p = float(np.median(tiled)), max(tiled), float(np.median(base)), float(np.median(plain))
        per_row = extra / args.rows
        print(f"\nrows: {args.rows:,}; rules: {len(RECIPE['rules'])}; score columns {score_bytes / args.rows:.1f} bytes a row;"
              f" Live set-up {C.fmt_s(t_setup)}; grab (tile build + first counts) {C.fmt_s(t_grab)}")
        print(f"{'measurement':<62} {'median':>9} {'max':>9}")
        print(f"{'baseline: full polars re-evaluation (evaluate)':<62} {C.fmt_s(b):>9} {C.fmt_s(max(base)):>9}")
        print(f"{'one pass: set_bounds + counts + 64-bin histogram':<62} {C.fmt_s(p):>9} {C.fmt_s(max(plain)):>9}")
        print(f"{'slider tile: set_bounds + counts + 64-bin histogram':<62} {C.fmt_s(med):>9} {C.fmt_s(worst):>9}")
        print(f"\nmemory beyond the score columns: {per_row:.1f} bytes a row (patterns, tile, histogram bins, "
              f"converted columns; process RSS grew {rss_live / args.rows:.1f} bytes a row)")
        print(f"speed-up over polars: {b / med:.0f}x; over the one-pass path: {p / med:.1f}x; target median <= 25 ms: "
              f"{'OK' if med <= TARGET_S else 'MISSED'}; <= 16 bytes a row: {'OK' if per_row <= TARGET_BYTES else 'MISSED'} "
              "(counts checked against evaluate)")
        results.update({"median_s": med, "max_s": worst, "onepass_median_s": p, "baseline_s": b, "setup_s": t_setup,
                        "grab_s": t_grab, "bytes_per_row": per_row, "ok": med <= TARGET_S and per_row <= TARGET_BYTES})
    finally:
        C.finish(noise, results, args.json_out)


if __name__ == "__main__":
    main()
