"""Write the README's figures: run the teaching notebooks on the demo world with figures_dir set.

    python docs/make_figures.py                 # all of notebooks/02..07, 100,000 demo rows
    python docs/make_figures.py 04_audit        # one notebook

Each notebook writes its key figures as PNG into docs/figures/ (plotly + kaleido, which drives a
Chrome/Chromium found on the machine). The executed notebooks go to test-artifacts/figures/.
"""
from __future__ import annotations

import sys
from pathlib import Path

import papermill

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


def main(names: list[str]) -> int:
    paths = [NOTEBOOKS / f"{n}.ipynb" for n in names] if names else \
        [p for p in sorted(NOTEBOOKS.glob("*.ipynb")) if not p.name.startswith("01_")]
    out = ROOT / "test-artifacts" / "figures"
    out.mkdir(parents=True, exist_ok=True)
    for p in paths:
        print(f"running {p.name}", flush=True)
        papermill.execute_notebook(str(p), str(out / p.name), cwd=str(NOTEBOOKS), kernel_name="python3",
                                   parameters={"figures_dir": str(ROOT / "docs" / "figures")}, progress_bar=False)
    print(f"figures in {ROOT / 'docs' / 'figures'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
