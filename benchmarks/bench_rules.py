"""Recipe evaluation against its rule count: the cost must grow linearly with rules x rows.

For 1,000, 4,000 and 10,000 threshold rules over the same frame (100,000 rows, 8 score columns,
each rule ``{column: s_k, min: t}`` with its own t), measured in the same run:
- ``workbench.curation.recipe.evaluate(frame, recipe)`` (keeps, per-rule counts alone and in order, the
  first reason of every row);
- the baseline: one polars pass computing the same keep columns (``frame.select(keeps)``), the
  least any evaluation must do.
Printed: seconds, seconds per 1,000 rules (flat when linear), and the ratio to the baseline.

    python benchmarks/bench_rules.py            # 100,000 rows
    python benchmarks/bench_rules.py --quick    # 10,000 rows
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import polars as pl

import _common as C
from workbench.curation.recipe import Recipe, evaluate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--rules", default="1000,4000,10000")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json-out")
    args = ap.parse_args()
    if args.quick:
        args.rows = 10_000
    sizes = [int(x) for x in args.rules.split(",")]
    C.header(f"recipe evaluation: {', '.join(f'{k:,}' for k in sizes)} threshold rules over {args.rows:,} rows")
    noise = C.OtherLoad()
    rng = np.random.default_rng(0)
    frame = pl.DataFrame({"row": np.arange(args.rows, dtype=np.int64),
                          **{f"s{j}": rng.random(args.rows) for j in range(8)}})
    results: dict = {"machine": C.machine(), "rows": args.rows, "sizes": {}}
    for k in sizes:
        # thresholds low enough that most rows pass most rules: every rule still removes some rows
        recipe = Recipe.from_dict({"rules": [{"column": f"s{i % 8}", "min": float(t), "name": f"rule {i}"}
                                             for i, t in enumerate(rng.uniform(0, 1e-3, k))]})
        keeps = [r.keep(recipe.base).alias(f"k{i}") for i, r in enumerate(recipe.rules)]
        t_base, _, _ = C.best_of(lambda: frame.lazy().select(keeps).collect(), 2)
        t_eval, _, sel = C.best_of(lambda: evaluate(frame, recipe), 2)
        print(f"{k:>6,} rules: evaluate {t_eval:.3f} s ({t_eval / k * 1000:.3f} s per 1,000 rules), "
              f"baseline polars pass {t_base:.3f} s, ratio {t_eval / t_base:.2f}; kept {sel.kept_rows().size:,}")
        results["sizes"][k] = {"evaluate_s": t_eval, "baseline_s": t_base}
    C.finish(noise, results, None if not args.json_out else __import__("pathlib").Path(args.json_out))


if __name__ == "__main__":
    main()
