"""The quickstart notebook in a real browser: JupyterLab on 127.0.0.1 + headless Debian chromium.

Needs /usr/bin/chromium (apt-get install -y chromium) or WORKBENCH_CHROMIUM, and the playwright
python package; no browser download.  Fails, never skips, when they are missing: CI installs them.
Screenshots, the browser console, cell errors, timings and the JupyterLab server log are kept in
test-artifacts/browser/<test>/.  The harness itself is in tests/browser.py.
"""
from __future__ import annotations

from pathlib import Path

# tests/browser.py: the fixtures (chromium, artifacts_dir, lab_for_notebook) and the steps.
# Loaded as a plugin (not imported here first) so that pytest rewrites its asserts.
pytest_plugins = ["browser"]

QUICKSTART = Path(__file__).resolve().parents[2] / "notebooks" / "01_quickstart.ipynb"

# The demo world the notebook builds (it reads WORKBENCH_DEMO_DIR / WORKBENCH_DEMO_ROWS).
DEMO_ROWS = 100_000
# The number of points the map must draw (None: only the number the panel states in .wb-map-info,
# "100,000 of 100,000 rows drawn" -> 100000, is checked).
EXPECTED_MAP_POINTS: int | None = DEMO_ROWS


def test_quickstart_in_a_real_browser(lab_for_notebook, record_property):
    from browser import check_workbench_ui

    assert QUICKSTART.exists(), f"{QUICKSTART} is missing"
    lab = lab_for_notebook(QUICKSTART, name="quickstart", env={"WORKBENCH_DEMO_ROWS": str(DEMO_ROWS)})
    timings = check_workbench_ui(lab, expected_points=EXPECTED_MAP_POINTS, lasso_retries=0)
    for k, v in timings.items():
        record_property(k, v)
