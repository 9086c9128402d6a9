"""Write docs/figures/panel.png: the notebook panel on the demo world, as a browser draws it.

    .venv/bin/python docs/make_screenshot.py [--rows 20000] [--umap-wait 240] [--out docs/figures/panel.png]

Runs the quickstart notebook (notebooks/01_quickstart.ipynb) in JupyterLab and headless Debian
chromium, driven by playwright, with the harness the browser test uses (tests/browser.py): no
browser is downloaded (``apt-get install -y chromium``, or set WORKBENCH_CHROMIUM). It waits for
the map (and, up to ``--umap-wait`` seconds, for UMAP to replace the quick PCA view), draws a
lasso so the gallery shows rows, and saves a screenshot of the window's part of the panel
(``.wb-panel``: filters, map and gallery side by side, at 1400 x 1000 with the file browser closed).
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VIEW_W, VIEW_H = 1400, 1000   # the size the browser test checks the layout at (tests/browser.py)
sys.path.insert(0, str(REPO / "tests"))

import browser  # noqa: E402  (tests/browser.py: JupyterLab + chromium harness)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=20_000, help="rows of the demo world (default 20,000)")
    ap.add_argument("--umap-wait", type=float, default=240.0,
                    help="seconds to wait for UMAP to replace the PCA view (0: keep the PCA view)")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "figures" / "panel.png")
    args = ap.parse_args(argv)

    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="wb-screenshot-"))
    try:
        root = tmp / "nb"
        root.mkdir()
        shutil.copy(REPO / "notebooks" / "01_quickstart.ipynb", root / "01_quickstart.ipynb")
        env = {"WORKBENCH_DEMO_DIR": str(tmp / "demo"), "WORKBENCH_DEMO_ROWS": str(args.rows)}
        with browser.start_jupyter_lab(root, tmp / "jupyter-server.log", env=env) as server, \
                sync_playwright() as p:
            chromium = browser.launch_chromium(p)
            try:
                ctx = chromium.new_context(viewport={"width": VIEW_W, "height": VIEW_H}, device_scale_factor=1)
                ctx.set_default_timeout(browser.STEP_S * 1000)
                lab = browser.LabPage(ctx.new_page(), server, tmp / "artifacts")
                lab.open_notebook("01_quickstart.ipynb")
                lab.wait_kernel_idle()
                # the notebook alone: no file browser beside it
                lab.page.evaluate("() => window.jupyterapp.commands.execute('application:toggle-left-area')")
                lab.run_all_cells()
                lab.wait_for_map(timeout=120)
                deadline = time.monotonic() + args.umap_wait
                while time.monotonic() < deadline and "(UMAP)" not in lab.text(".wb-map-info"):
                    time.sleep(2)
                time.sleep(2)  # the last repaint
                lab.wait_for_map(timeout=60)
                lab.lasso_select(frac=0.06)
                time.sleep(2)  # thumbnails
                panel = lab.page.locator(".wb-panel").first
                panel.evaluate("e => e.scrollIntoView({block: 'start'})")
                time.sleep(1)
                box = panel.bounding_box()
                # the part of the panel the window shows (map, filters, counts), above the status bar
                top = max(box["y"], 0)
                clip = {"x": box["x"], "y": top, "width": min(box["width"], VIEW_W - box["x"]),
                        "height": min(box["height"], VIEW_H - 30 - top)}
                args.out.parent.mkdir(parents=True, exist_ok=True)
                part = args.out.with_name(args.out.name + ".part")
                lab.page.screenshot(path=str(part), type="png", clip=clip)
                part.replace(args.out)
                print(f"wrote {args.out} ({lab.text('.wb-map-info')})")
            finally:
                chromium.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
