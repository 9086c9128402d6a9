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
    from browser import check_panel_layout, check_workbench_ui

    assert QUICKSTART.exists(), f"{QUICKSTART} is missing"
    lab = lab_for_notebook(QUICKSTART, name="quickstart", env={"WORKBENCH_DEMO_ROWS": str(DEMO_ROWS)})
    timings = check_workbench_ui(lab, expected_points=EXPECTED_MAP_POINTS, lasso_retries=0)
    # laid out for work at 1400 x 1000: map, filters and gallery in view at once, labels apart
    check_panel_layout(lab, 1400, 1000)
    lab.dump()
    for k, v in timings.items():
        record_property(k, v)


PANEL_LARGE = Path(__file__).resolve().parent / "panel_large.ipynb"
LARGE_ROWS = 10_000_000


def test_the_panel_on_ten_million_rows(lab_for_notebook, tmp_path_factory, record_property):
    """The panel on a 10M-row collection (score columns and 8-d embeddings, generated fast): the map
    draws its sample, and slider moves change the counts, answered from the slider tile (the first
    slider's tile is built while the panel shows). The latency of each move is recorded
    (timings.json); benchmarks/RESULTS.md states the measured numbers."""
    from browser import numbers_in
    from large_world import make_large_world

    world = make_large_world(tmp_path_factory.mktemp("large") / "world", LARGE_ROWS)
    lab = lab_for_notebook(PANEL_LARGE, name="panel-10m", env={"WORKBENCH_COLLECTION": str(world)})
    lab.run_all_cells()
    info = lab.wait_for_map()
    assert info.points == 50_000 and numbers_in(lab.text(".wb-map-info"))[:2] == [50_000, LARGE_ROWS]
    counts0 = lab.text(".wb-counts")
    assert f"of {LARGE_ROWS:,} rows" in counts0, counts0
    seen = [counts0]
    for _ in range(4):
        ch = lab.move_first_slider(presses=1, key="PageUp")
        assert ch.after != ch.before and numbers_in(ch.after) != numbers_in(ch.before), (ch.before, ch.after)
        seen.append(ch.after)
    lab.shot("moved")
    ms = lab.timings["slider_to_counts_paint_ms"]
    record_property("slider_to_counts_paint_ms", ms)
    lab.timings["rows"] = LARGE_ROWS
    lab.dump()
    assert len(set(seen)) == len(seen)
