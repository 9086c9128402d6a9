"""`workbench demo --out <tmp> --rows 100000 --quiet` end to end, as a subprocess.

Start-up, building the synthetic demo world and opening it are all inside the timed span; each
repetition writes into a fresh, empty folder (the demo reuses an existing world). Baseline in the
same run: `python -c "import workbench"` (start-up + the library's imports). Target: < 60 s.
Also printed: the child's peak RSS and what the demo world holds on disk.

If workbench/demo/build.py does not exist (yet), the script says SKIPPED and exits 0.

    python benchmarks/bench_demo.py            # 100,000 rows
    python benchmarks/bench_demo.py --quick    # 10,000 rows
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import _common as C

TARGET_S = 60.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=1, help="timed demo builds (each ~tens of s); the best is reported")
    ap.add_argument("--quick", action="store_true", help="10,000 rows")
    ap.add_argument("--keep", action="store_true", help="keep the last demo world under benchmarks/_data/")
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args()
    if args.quick:
        args.rows = 10_000

    C.header("bench_demo")
    noise = C.OtherLoad()
    if importlib.util.find_spec("workbench.demo.build") is None:
        print("SKIPPED: workbench/demo/build.py does not exist (yet); nothing to time.")
        return 0

    out = C.DATA_DIR / f"demo_{args.rows}"
    results: dict = {"machine": C.machine(), "rows": args.rows}
    try:
        base = C.best_of_child([C.PYTHON, "-c", "import workbench"], 3)
        walls, rss, stdout = [], [], ""
        for _ in range(args.repeat):
            C.remove(out)
            out.parent.mkdir(parents=True, exist_ok=True)
            w, r, _, stdout = C.run_child([C.PYTHON, "-m", "workbench", "demo", "--out", str(out),
                                           "--rows", str(args.rows), "--quiet"])
            walls.append(w)
            rss.append(r)
        best = min(walls)
        app, alloc = C.du(out)
        rows_found = None
        try:
            from workbench import open_collection

            rows_found = len(open_collection(out))
        except Exception as exc:  # noqa: BLE001 - report, don't hide the timing
            print(f"note: the demo world did not open as a collection: {exc}")
        demo_label = f"python -m workbench demo --rows {args.rows:,} --quiet"
        base_label = "python -c 'import workbench'"
        print(f"\nbaseline  {base_label:48s} {C.fmt_s(base['best_s']):>8}  rss {C.fmt_mb(base['peak_rss'])}")
        print(f"measured  {demo_label:48s} {C.fmt_s(best):>8}  rss {C.fmt_mb(max(rss))}"
              + (f"   (all runs: {', '.join(C.fmt_s(t) for t in walls)})" if len(walls) > 1 else ""))
        print(f"demo world: {app / C.MB:.0f} MB on disk; opens as {rows_found if rows_found is None else f'{rows_found:,}'} rows"
              + ("" if rows_found in (None, args.rows) else f"  (asked for {args.rows:,})"))
        print(f"ratio demo / import-baseline = {best / base['best_s']:.1f}x")
        print(f"vs target: {best:.1f} s / {TARGET_S:.0f} s = {best / TARGET_S:.2f}  [{'OK' if best < TARGET_S else 'OVER'}]")
        tail = [line for line in stdout.splitlines() if line.strip()][-3:]
        print("last lines of its output:\n  " + "\n  ".join(tail))
        results.update({
            "baseline_import_s": base["best_s"], "demo_s": best, "demo_all_s": walls, "demo_rss": max(rss),
            "ratio_vs_baseline": best / base["best_s"], "ratio_vs_target": best / TARGET_S,
            "disk_bytes": app, "rows_found": rows_found,
        })
    finally:
        C.finish(noise, results, args.json_out)
        if args.keep:
            print(f"\nkept {out}")
        else:
            C.remove(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
