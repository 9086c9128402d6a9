"""Real-browser harness: JupyterLab on 127.0.0.1 + headless Debian chromium driven by playwright.

Used by tests/widgets/test_browser.py (and later by the browser benchmark). Nothing here downloads a
browser: playwright only drives the system chromium (``/usr/bin/chromium`` or $WORKBENCH_CHROMIUM).

Pieces
------
* ``start_jupyter_lab(root_dir, log_path, env=...)``: context manager -> ``JupyterServer``
  (free port, random token, --allow-root, settings/workspaces/config/data dirs in a temp dir,
  widgets-friendly lab settings, waits for /api/status; at exit: /api/shutdown, then the process
  group and any left-over kernel is killed).
* ``launch_chromium(playwright)``: the system chromium, headless, with software WebGL (plotly's
  Scattergl needs WebGL).  Fails (never skips) when chromium is missing.
* ``LabPage``: one JupyterLab tab.  Every step returns browser-side timings in milliseconds
  (``performance.now()`` of the page, so no Python/IPC latency is counted):
  ``open_notebook`` -> ``wait_kernel_idle`` -> ``run_all_cells`` -> ``wait_for_map`` ->
  ``move_first_slider`` -> ``lasso_select``; ``shot(name)`` writes a screenshot.
* pytest fixtures: ``artifacts_dir``, ``chromium`` (a playwright Browser) and the factory
  ``lab_for_notebook`` (copies a notebook's folder to a temp dir, starts JupyterLab on it with
  WORKBENCH_DEMO_DIR pointing at another temp dir, yields a ``LabPage`` on the notebook).

DOM contract with the notebook UI (class names set with ``widget.add_class``)
------------------------------------------------------------------------------
  .wb-panel    the outer box
  .wb-filters  box holding the sliders; the FIRST slider in it is the one the test moves
  .wb-counts   HTML whose text changes when a filter changes (e.g. "kept 1,234 of 6,000")
  .wb-map      the plotly FigureWidget (its Scattergl trace 0 holds the drawn points)
  .wb-gallery  HTML filled by the map's on_selection callback, one .wb-item per selected point
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts" / "browser"

# Generous, 2-core-machine timeouts (seconds); each can be raised from the environment.
SERVER_START_S = float(os.environ.get("WORKBENCH_BROWSER_SERVER_TIMEOUT", "90"))
KERNEL_IDLE_S = float(os.environ.get("WORKBENCH_BROWSER_KERNEL_TIMEOUT", "90"))
RUN_ALL_S = float(os.environ.get("WORKBENCH_BROWSER_RUN_TIMEOUT", "150"))
STEP_S = float(os.environ.get("WORKBENCH_BROWSER_STEP_TIMEOUT", "30"))

CHROMIUM_ARGS = [
    "--no-sandbox",                # root in a container
    "--disable-dev-shm-usage",     # small /dev/shm in containers
    "--use-angle=swiftshader",     # software WebGL: plotly Scattergl draws with WebGL
    "--enable-unsafe-swiftshader",  # chromium >= 137 no longer falls back to SwiftShader by itself
    "--ignore-gpu-blocklist",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-features=Translate,MediaRouter,OptimizationHints",
]

# JupyterLab user settings written into the temp settings dir.
LAB_SETTINGS = {
    # render every cell (no virtual scrolling), so widget outputs exist in the DOM even off-screen
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    # no news / update pop-up over the notebook (there is no network anyway)
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false", "checkForUpdates": False, "doNotDisturbMode": True},
}


# --------------------------------------------------------------------------------------------
# chromium
# --------------------------------------------------------------------------------------------
def chromium_executable() -> str:
    """Path of the system chromium; pytest.fail (not skip) when it is missing: CI installs it."""
    exe = os.environ.get("WORKBENCH_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
        pytest.fail(
            f"chromium not found at {exe!r}: the browser test needs Debian's chromium "
            "(apt-get install -y chromium) or WORKBENCH_CHROMIUM=/path/to/chrome. "
            "playwright must not download its own browser.", pytrace=False)
    return exe


def launch_chromium(playwright, headless: bool = True):
    """Launch the system chromium through playwright (never a downloaded build)."""
    return playwright.chromium.launch(
        executable_path=chromium_executable(), headless=headless, args=CHROMIUM_ARGS,
        timeout=60_000)


# --------------------------------------------------------------------------------------------
# JupyterLab server
# --------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class JupyterServer:
    proc: subprocess.Popen
    port: int
    token: str
    root_dir: Path
    log_path: Path
    state_dir: Path
    started_s: float = 0.0          # seconds from Popen to /api/status answering
    kernel_pids: set = field(default_factory=set)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def lab_url(self, notebook: str) -> str:
        return f"{self.base_url}/lab/tree/{notebook}?token={self.token}"

    def api(self, path: str, method: str = "GET", timeout: float = 5.0):
        req = urllib.request.Request(
            f"{self.base_url}{path}", method=method,
            headers={"Authorization": f"token {self.token}"},
            data=b"" if method in ("POST", "PUT") else None)
        with urllib.request.urlopen(req, timeout=timeout) as r:
            body = r.read()
        return json.loads(body) if body else None

    def log_tail(self, n: int = 60) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])


def _write_lab_settings(settings_dir: Path) -> None:
    for rel, value in LAB_SETTINGS.items():
        p = settings_dir / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(value))


def _descendants(pid: int) -> set[int]:
    try:
        import psutil
    except ImportError:
        return set()
    try:
        return {c.pid for c in psutil.Process(pid).children(recursive=True)}
    except psutil.Error:
        return set()


@contextlib.contextmanager
def start_jupyter_lab(root_dir: Path, log_path: Path, env: dict | None = None,
                      timeout: float = SERVER_START_S) -> Iterator[JupyterServer]:
    """Run ``python -m jupyter lab`` (this interpreter's) on 127.0.0.1 with ``root_dir`` as root.

    No user state leaks in: config, data, runtime, settings, workspaces and IPython dirs all live
    in a temp dir.  ``env`` is added to the server's (and so the kernels') environment.
    """
    root_dir = Path(root_dir)
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    state = Path(tempfile.mkdtemp(prefix="wb-lab-state-"))
    settings_dir = state / "user-settings"
    _write_lab_settings(settings_dir)
    for d in ("workspaces", "config", "data", "runtime", "ipython"):
        (state / d).mkdir()
    port, token = free_port(), secrets.token_hex(24)

    senv = dict(os.environ)
    senv.update({
        "JUPYTER_CONFIG_DIR": str(state / "config"),
        "JUPYTER_DATA_DIR": str(state / "data"),
        "JUPYTER_RUNTIME_DIR": str(state / "runtime"),
        "IPYTHONDIR": str(state / "ipython"),
        "JUPYTER_PLATFORM_DIRS": "1",
        "PYTHONUNBUFFERED": "1",
        # the repo importable from the kernel even without `pip install -e .`
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
    })
    senv.pop("JUPYTER_PATH", None)
    senv.pop("JUPYTER_TOKEN", None)
    senv.update(env or {})
    cmd = [
        sys.executable, "-m", "jupyter", "lab",
        "--no-browser", "--allow-root",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root_dir}",
        f"--LabApp.user_settings_dir={settings_dir}",
        f"--LabApp.workspaces_dir={state / 'workspaces'}",
        "--LabApp.expose_app_in_browser=True",   # window.jupyterapp: run commands, read kernel state
        "--LabApp.news_url=",
        "--ServerApp.terminals_enabled=False",
        "--ServerApp.shutdown_no_activity_timeout=900",  # a leaked server goes away by itself
        "--MappingKernelManager.cull_idle_timeout=0",
    ]
    logf = open(log_path, "w", buffering=1)
    logf.write("$ " + " ".join(cmd) + "\n")
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=root_dir, env=senv, stdout=logf, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    server = JupyterServer(proc, port, token, root_dir, log_path, state)
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {proc.returncode}:\n{server.log_tail()}")
            try:
                server.api("/api/status", timeout=2)
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            if time.monotonic() - t0 > timeout:
                raise RuntimeError(f"jupyter lab did not answer /api/status within {timeout:.0f}s:\n"
                                   f"{server.log_tail()}")
            time.sleep(0.25)
        server.started_s = time.monotonic() - t0
        yield server
    finally:
        _stop_server(server)
        logf.close()
        shutil.rmtree(state, ignore_errors=True)


def _stop_server(server: JupyterServer) -> None:
    proc = server.proc
    # kernels run in their own sessions (jupyter_client start_new_session): remember them first
    pids = _descendants(proc.pid) | server.kernel_pids
    if proc.poll() is None:
        with contextlib.suppress(Exception):
            server.api("/api/shutdown", method="POST", timeout=5)   # shuts kernels down too
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
    for pid in pids:   # left-over kernels
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


# --------------------------------------------------------------------------------------------
# the page
# --------------------------------------------------------------------------------------------
# In-page instrumentation: times of the last user input and of every .wb-counts / .wb-gallery
# change, in performance.now() milliseconds, recorded by the page itself.
_INSTRUMENT_JS = r"""
() => {
  if (window.__wb) return;
  const wb = window.__wb = {input: null, inputs: [], counts: [], gallery: []};
  const note = (e) => { wb.input = e.timeStamp || performance.now(); wb.inputs.push([e.type, wb.input]); };
  for (const t of ['keydown', 'pointerdown', 'pointerup', 'mousedown', 'mouseup'])
    document.addEventListener(t, note, true);
  const watch = (sel, list) => {
    const obs = new MutationObserver(() => {
      const el = document.querySelector(sel);
      // textContent, not innerText: no forced layout on every mutation of the page
      const text = el ? el.textContent.replace(/\s+/g, ' ').trim() : null;
      const last = list.length ? list[list.length - 1] : null;
      if (!last || last.text !== text) {
        const rec = {t: performance.now(), text, paint: null,
                     items: el ? el.querySelectorAll('.wb-item').length : 0};
        list.push(rec);
        requestAnimationFrame(() => requestAnimationFrame(() => { rec.paint = performance.now(); }));
      }
    });
    obs.observe(document.body, {subtree: true, childList: true, characterData: true});
  };
  wb.longtasks = [];
  try {
    new PerformanceObserver((l) => { for (const e of l.getEntries()) wb.longtasks.push([e.startTime, e.duration]); })
      .observe({type: 'longtask', buffered: true});
  } catch (e) {}
  watch('.wb-counts', wb.counts);
  watch('.wb-gallery', wb.gallery);
}
"""

# Errors recorded in the notebook model (cell outputs of type "error"), formatted.
_CELL_ERRORS_JS = r"""
() => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  if (!w || !w.content || !w.content.model) return [];
  const out = [];
  const cells = w.content.model.cells;
  for (let i = 0; i < cells.length; i++) {
    const c = cells.get(i);
    if (c.type !== 'code') continue;
    const outs = c.outputs;
    for (let j = 0; j < outs.length; j++) {
      const o = outs.get(j).toJSON();
      if (o.output_type === 'error')
        out.push(`cell ${i}: ${o.ename}: ${o.evalue}\n` + (o.traceback || []).join('\n')
                 .replace(/\x1b\[[0-9;]*m/g, ''));
    }
  }
  return out;
}
"""

_KERNEL_STATUS_JS = r"""
() => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const sc = w && w.sessionContext;
  const k = sc && sc.session && sc.session.kernel;
  return k ? k.status : (sc && sc.isReady === false ? 'starting' : null);
}
"""

# The plotly graph div of the .wb-map widget, with its trace-0 point count once it has drawn.
_MAP_STATE_JS = r"""
() => {
  // the FigureWidget's own element IS the plotly graph div: <div class="js-plotly-plot wb-map">;
  // graph divs present when the last run started (marked __wbOld) do not count
  const gd = [...document.querySelectorAll('.wb-map.js-plotly-plot, .wb-map .js-plotly-plot')].find(g => !g.__wbOld);
  if (!gd || !gd._fullData || !gd._fullData.length || !gd._fullLayout) return null;
  const d = gd.data[0];
  const n = d && d.x ? d.x.length : 0;
  const glFailed = !!gd.querySelector('.gl-container') && !gd.querySelector('canvas');
  const canvases = gd.querySelectorAll('canvas').length;
  const drag = gd.querySelector('.nsewdrag');
  return {points: n, traces: gd.data.length, type: d && d.type, canvases, glFailed,
          dragmode: gd._fullLayout.dragmode, hasDrag: !!drag, t: performance.now()};
}
"""


# Viewport boxes of the work area (the map's plot, the filters column, the gallery column) and of every
# cluster label drawn on the map (plotly's SVG annotations: the label's background rect).
_LAYOUT_JS = r"""
() => {
  const box = (el) => { if (!el) return null; const r = el.getBoundingClientRect();
                        return {x: r.left, y: r.top, w: r.width, h: r.height}; };
  const gd = [...document.querySelectorAll('.wb-map.js-plotly-plot, .wb-map .js-plotly-plot')].find(g => !g.__wbOld)
             || document.querySelector('.wb-map');
  const labels = gd ? [...gd.querySelectorAll('g.annotation')].map(a => {
      const r = box(a.querySelector('rect.bg') || a); return {text: a.textContent, ...r}; }) : [];
  return {viewport: {w: window.innerWidth, h: window.innerHeight}, map: box(gd),
          filters: box(document.querySelector('.wb-filter-column')),
          sliders: box(document.querySelector('.wb-filters')),
          gallery: box(document.querySelector('.wb-gallery-column')),
          items: document.querySelectorAll('.wb-gallery .wb-item').length, labels};
}
"""


def boxes_intersect(a: dict, b: dict) -> bool:
    return a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"] and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"]


def inside(b: dict | None, w: float, h: float) -> bool:
    return bool(b) and b["w"] > 0 and b["h"] > 0 and b["x"] >= 0 and b["y"] >= 0 and \
        b["x"] + b["w"] <= w + 0.5 and b["y"] + b["h"] <= h + 0.5


class LassoLostToHover(AssertionError):
    """plotly emitted the selection but the kernel never saw it: a hover/unhover event replaced it
    in ipywidgets' send buffer (a FigureWidget with hover events on)."""


@dataclass
class MapInfo:
    points: int          # len(gd.data[0].x) of the .wb-map figure
    traces: int
    trace_type: str
    dragmode: str
    ms_after_run: float  # browser ms from the run-all command to a drawn map


@dataclass
class Change:
    before: str
    after: str
    ms: float            # browser ms from the user input event to the DOM change
    paint_ms: float | None  # ... to two animation frames later (i.e. painted)
    items: int = 0


class LabPage:
    """A JupyterLab tab in playwright (sync API) plus the step helpers for the workbench UI."""

    def __init__(self, page, server: JupyterServer, artifacts: Path):
        self.page = page
        self.server = server
        self.artifacts = Path(artifacts)
        self.artifacts.mkdir(parents=True, exist_ok=True)
        self.console: list[str] = []
        self.timings: dict[str, float] = {}
        self._shots = 0
        page.on("console", lambda m: self.console.append(f"[{m.type}] {m.text}"))
        page.on("pageerror", lambda e: self.console.append(f"[pageerror] {e}"))
        page.on("requestfailed",
                lambda r: self.console.append(f"[requestfailed] {r.url} {r.failure}"))

    # -- artifacts ---------------------------------------------------------------------------
    def shot(self, name: str) -> Path:
        """Full-page screenshot + (when present) a screenshot of just the .wb-panel."""
        self._shots += 1
        path = self.artifacts / f"{self._shots:02d}-{name}.png"
        with contextlib.suppress(Exception):
            self.page.screenshot(path=str(path), full_page=True, timeout=15_000)
        panel = self.page.locator(".wb-panel").first
        with contextlib.suppress(Exception):
            if panel.count():
                panel.screenshot(path=str(path.with_name(path.stem + "-panel.png")), timeout=10_000)
        return path

    def dump(self) -> None:
        """Write console messages, cell errors and timings next to the screenshots."""
        (self.artifacts / "console.log").write_text("\n".join(self.console) + "\n")
        with contextlib.suppress(Exception):
            errs = self.cell_errors()
            (self.artifacts / "cell-errors.txt").write_text("\n\n".join(errs) + "\n")
        (self.artifacts / "timings.json").write_text(json.dumps(self.timings, indent=2) + "\n")

    def console_errors(self) -> list[str]:
        return [m for m in self.console if m.startswith(("[error]", "[pageerror]"))]

    def now(self) -> float:
        return self.page.evaluate("performance.now()")

    # -- lab ---------------------------------------------------------------------------------
    def open_notebook(self, notebook: str, timeout: float = 120) -> float:
        """Load /lab/tree/<notebook>; wait for the app and the notebook; return ms to ready."""
        page = self.page
        t0 = time.monotonic()
        page.goto(self.server.lab_url(notebook), wait_until="domcontentloaded",
                  timeout=timeout * 1000)
        page.wait_for_function(
            "() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
            " && window.jupyterapp.shell.currentWidget.content"
            " && window.jupyterapp.shell.currentWidget.context"
            " && window.jupyterapp.shell.currentWidget.context.isReady",
            timeout=timeout * 1000, polling=100)
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=timeout * 1000)
        page.evaluate(_INSTRUMENT_JS)
        page.evaluate(f"() => {{ window.__wb.mapState = ({_MAP_STATE_JS}); }}")
        self.timings["open_notebook_s"] = time.monotonic() - t0
        return self.timings["open_notebook_s"]

    def kernel_status(self) -> str | None:
        return self.page.evaluate(_KERNEL_STATUS_JS)

    def wait_kernel_idle(self, timeout: float = KERNEL_IDLE_S) -> float:
        """Wait for an idle kernel.  A kernel-selection dialog (notebook metadata naming a kernel
        this server lacks) is accepted with its default choice, with a screenshot first."""
        t0 = time.monotonic()
        page = self.page
        while True:
            if self.kernel_status() == "idle":
                break
            dialog = page.locator(".jp-Dialog .jp-mod-accept")
            if dialog.count() and dialog.first.is_visible():
                self.shot("kernel-dialog")
                self.console.append("[harness] accepted a JupyterLab dialog: "
                                    + page.locator(".jp-Dialog").first.inner_text()[:300])
                dialog.first.click()
            if time.monotonic() - t0 > timeout:
                self.shot("timeout-kernel")
                raise AssertionError(f"kernel not idle within {timeout:.0f}s (status "
                                     f"{self.kernel_status()!r}); server log:\n{self.server.log_tail(30)}")
            time.sleep(0.1)
        self.timings.setdefault("kernel_idle_s", time.monotonic() - t0)
        self.server.kernel_pids |= _descendants(self.server.proc.pid)
        return time.monotonic() - t0

    def run_all_cells(self, timeout: float = RUN_ALL_S) -> float:
        """Run > Run All Cells (command 'notebook:run-all-cells' through window.jupyterapp);
        wait until every cell finished and the kernel is idle.  Returns seconds.

        Raises AssertionError with the tracebacks when a cell failed."""
        t = self._run_command("notebook:run-all-cells", timeout)
        self.timings["run_all_s"] = t
        return t

    def cell_count(self) -> int:
        return self.page.evaluate("window.jupyterapp.shell.currentWidget.content.widgets.length")

    def cell_index(self, containing: str) -> int:
        """Index of the first cell whose source contains ``containing`` (e.g. 'wb-panel')."""
        i = self.page.evaluate("""(needle) => {
            const cells = window.jupyterapp.shell.currentWidget.content.widgets;
            return cells.findIndex(c => c.model.sharedModel.getSource().includes(needle)); }""",
                               containing)
        assert i >= 0, f"no cell contains {containing!r}"
        return i

    def run_cell(self, index: int, timeout: float = RUN_ALL_S) -> float:
        """Run one cell (negative index from the end) in place; wait for it.  Returns seconds.
        ``wait_for_map`` then times the map from this cell's start."""
        n = self.cell_count()
        index = index % n
        self.page.evaluate("(i) => { window.jupyterapp.shell.currentWidget.content.activeCellIndex = i; }",
                           index)
        t = self._run_command("notebook:run-cell", timeout)
        self.timings.setdefault("run_cell_s", {})[str(index)] = t
        return t

    def run_all_above(self, index: int, timeout: float = RUN_ALL_S) -> float:
        """Run every cell above cell ``index`` (Run > Run All Above Selected Cell)."""
        index = index % self.cell_count()
        self.page.evaluate("(i) => { window.jupyterapp.shell.currentWidget.content.activeCellIndex = i; }",
                           index)
        return self._run_command("notebook:run-all-above", timeout)

    def _run_command(self, command: str, timeout: float) -> float:
        page = self.page
        t0 = time.monotonic()
        page.evaluate("""(cmd) => {
            const wb = window.__wb;
            wb.runStart = performance.now(); wb.runDone = null; wb.runResult = null;
            // watch, frame by frame, for the first drawn map of this run ('map visible' time)
            for (const g of document.querySelectorAll('.wb-map.js-plotly-plot, .wb-map .js-plotly-plot'))
                g.__wbOld = true;
            const gen = wb.runGen = (wb.runGen || 0) + 1;
            wb.mapSeen = null;
            const state = wb.mapState;
            const tick = () => {
                if (wb.runGen !== gen || wb.mapSeen) return;
                const st = state();
                if (st && st.hasDrag && st.points > 0) wb.mapSeen = st; else requestAnimationFrame(tick);
            };
            requestAnimationFrame(tick);
            window.jupyterapp.commands.execute(cmd).then(
                r => { wb.runResult = (r === undefined ? null : r); wb.runDone = performance.now(); },
                e => { wb.runResult = 'error: ' + e; wb.runDone = performance.now(); });
        }""", command)
        try:
            page.wait_for_function("() => window.__wb.runDone !== null",
                                   timeout=timeout * 1000, polling=200)
        except Exception as e:
            self.shot("timeout-run")
            raise AssertionError(
                f"{command} did not finish within {timeout:.0f}s (kernel {self.kernel_status()}); "
                f"cell errors: {self.cell_errors()}") from e
        # outputs and widget messages may still be arriving
        self.wait_kernel_idle(timeout=STEP_S)
        errors = self.cell_errors()
        if errors:
            self.shot("cell-error")
        assert not errors, "a notebook cell failed:\n" + "\n\n".join(errors)
        result = page.evaluate("window.__wb.runResult")
        assert result is not False and not str(result).startswith("error"), \
            f"{command} returned {result!r}"
        return time.monotonic() - t0

    def cell_errors(self) -> list[str]:
        return self.page.evaluate(_CELL_ERRORS_JS)

    # -- workbench UI ------------------------------------------------------------------------
    def wait_for_map(self, timeout: float = STEP_S * 2) -> MapInfo:
        """Wait until the .wb-map figure has drawn (a plotly graph div with its drag layer and
        points in trace 0, new since the last run command started); return its trace-0 point
        count and ``ms_after_run``: browser ms from the start of the last run command
        (run_all_cells / run_cell / run_all_above) to the first animation frame that found it drawn
        (watched frame by frame from the run's start: the 'map visible within N s' number)."""
        try:
            handle = self.page.wait_for_function(
                f"""() => {{ if (window.__wb.runStart != null) return window.__wb.mapSeen;
                            const s = ({_MAP_STATE_JS})(); return s && s.hasDrag && s.points > 0 ? s : null; }}""",
                timeout=timeout * 1000, polling="raf")
        except Exception as e:
            state = self.page.evaluate(_MAP_STATE_JS)
            raise AssertionError(f"no drawn .wb-map plot within {timeout:.0f}s; state={state}; "
                                 f"console errors={self.console_errors()[-10:]}") from e
        s = handle.json_value()
        # record plotly's own events, for the lasso step's diagnostics
        self.page.evaluate("""() => {
            const gd = [...document.querySelectorAll('.wb-map.js-plotly-plot, .wb-map .js-plotly-plot')].find(g => !g.__wbOld);
            if (!gd || gd.__wbEvents) return;
            gd.__wbEvents = window.__wb.plotly = [];
            for (const t of ['plotly_selected', 'plotly_deselect', 'plotly_hover', 'plotly_unhover', 'plotly_click'])
                gd.on(t, (d) => window.__wb.plotly.push([t, performance.now(), d && d.points ? d.points.length : null]));
        }""")
        run_start = self.page.evaluate("window.__wb.runStart")
        info = MapInfo(s["points"], s["traces"], s["type"], s["dragmode"],
                       (s["t"] - run_start) if run_start is not None else float("nan"))
        assert not s["glFailed"], "plotly's WebGL container has no canvas: WebGL failed"
        self.timings["map_visible_ms_after_run"] = info.ms_after_run
        return info

    def map_point_count(self) -> int:
        s = self.page.evaluate(_MAP_STATE_JS)
        return s["points"] if s else 0

    def text(self, selector: str) -> str:
        """textContent of the first match, whitespace collapsed (as the change records store it)."""
        return " ".join((self.page.locator(selector).first.text_content() or "").split())

    def _wait_change(self, key: str, before_len: int, timeout: float, pred: str = "true") -> dict:
        try:
            h = self.page.wait_for_function(
                f"""() => {{ const l = window.__wb.{key};
                    for (let i = {before_len}; i < l.length; i++) {{
                      const rec = l[i]; if (rec.paint !== null && ({pred})) return rec; }}
                    return null; }}""",
                timeout=timeout * 1000, polling="raf")
        except Exception as e:
            self.shot(f"timeout-{key}")
            raise AssertionError(f"no .{key} change within {timeout:.0f}s: "
                                 f"{self.page.evaluate('window.__wb.' + key)[-3:]}") from e
        return h.json_value()

    def first_slider(self):
        return self.page.locator(".wb-filters .widget-slider, .wb-filters .widget-hslider").first

    def move_first_slider(self, presses: int = 1, key: str = "ArrowRight",
                          timeout: float = STEP_S) -> Change:
        """Move the first slider of .wb-filters with the keyboard: focus its noUiSlider handle and
        press ``key`` (ArrowRight/ArrowLeft = one step, PageUp/PageDown = several) ``presses``
        times; wait until the .wb-counts text changed and then stayed put for 0.5 s.

        ``ms``/``paint_ms``: browser ms from the LAST key press to the moment the final text
        appeared in the DOM / two animation frames later (painted).  For the latency benchmark
        use presses=1.  Works with continuous_update True and False."""
        page = self.page
        slider = self.first_slider()
        slider.scroll_into_view_if_needed(timeout=timeout * 1000)
        handle = slider.locator(".noUi-handle").first
        before = self.text(".wb-counts")
        handle.focus(timeout=timeout * 1000)
        n0 = page.evaluate("window.__wb.counts.length")
        for _ in range(presses):
            page.keyboard.press(key)
        t_input = page.evaluate("window.__wb.input")
        self._wait_change("counts", n0, timeout)
        final = self._settle("counts", timeout)
        recs = page.evaluate("window.__wb.counts")[n0:]
        first_final = next(r for r in recs if r["text"] == final["text"] and r["t"] >= t_input)
        ch = Change(before, final["text"], first_final["t"] - t_input, first_final["paint"] - t_input)
        # main-thread tasks > 50 ms between the key press and the paint: what delays the paint
        long = page.evaluate("([a, b]) => window.__wb.longtasks.filter(([s, d]) => s + d > a && s < b)"
                             ".map(([s, d]) => Math.round(d))", [t_input, first_final["paint"]])
        self.timings.setdefault("slider_long_tasks_ms", []).append(long)
        self.timings.setdefault("slider_to_counts_ms", []).append(ch.ms)
        self.timings.setdefault("slider_to_counts_paint_ms", []).append(ch.paint_ms)
        return ch

    def set_first_slider_by_readout(self, value: float, timeout: float = STEP_S) -> Change:
        """Alternative: type a value into the slider's editable readout and press Enter."""
        page = self.page
        slider = self.first_slider()
        slider.scroll_into_view_if_needed(timeout=timeout * 1000)
        readout = slider.locator(".widget-readout").first
        before = self.text(".wb-counts")
        readout.click()
        page.keyboard.press("Control+A")
        page.keyboard.type(str(value))
        n0 = page.evaluate("window.__wb.counts.length")
        page.keyboard.press("Enter")
        t_input = page.evaluate("window.__wb.input")
        rec = self._wait_change("counts", n0, timeout)
        ch = Change(before, rec["text"], rec["t"] - t_input, rec["paint"] - t_input)
        self.timings.setdefault("readout_to_counts_ms", []).append(ch.ms)
        return ch

    def _settle(self, key: str, timeout: float, quiet_ms: float = 500) -> dict:
        """Wait until .<key> has not changed for quiet_ms; return the last record."""
        h = self.page.wait_for_function(
            f"""() => {{ const l = window.__wb.{key}; const r = l[l.length - 1];
                return r && r.paint !== null && performance.now() - r.t > {quiet_ms} ? r : null; }}""",
            timeout=timeout * 1000, polling=100)
        return h.json_value()

    def map_drag_box(self) -> dict:
        """Page-coordinates box of the plot area (plotly's main .nsewdrag rect)."""
        self.page.locator(".wb-map").first.scroll_into_view_if_needed()
        box = self.page.locator(".wb-map .draglayer .xy .nsewdrag, .wb-map .nsewdrag").first.bounding_box()
        assert box and box["width"] > 20 and box["height"] > 20, f"no plot drag area: {box}"
        return box

    def _lasso_target(self) -> dict | None:
        """Page coordinates of a drawn data point near the middle of the data (the point of
        trace 0 nearest to the median x/y), or None when the axes cannot map it."""
        return self.page.evaluate("""() => {
            const gd = [...document.querySelectorAll('.wb-map.js-plotly-plot, .wb-map .js-plotly-plot')].find(g => !g.__wbOld);
            const d = gd && gd._fullData && gd._fullData[0];
            const fl = gd && gd._fullLayout;
            if (!d || !fl || !d.x || !d.x.length) return null;
            const xa = fl[(d.xaxis || 'x').replace('x', 'xaxis')], ya = fl[(d.yaxis || 'y').replace('y', 'yaxis')];
            if (!xa || !ya || !xa.d2p || !ya.d2p) return null;
            const n = d.x.length, step = Math.max(1, Math.floor(n / 4000));
            const xs = [], ys = [];
            for (let i = 0; i < n; i += step) { xs.push(+d.x[i]); ys.push(+d.y[i]); }
            const med = a => { const b = Float64Array.from(a).sort(); return b[b.length >> 1]; };
            const mx = med(xs), my = med(ys);
            const sx = (xa.range[1] - xa.range[0]) || 1, sy = (ya.range[1] - ya.range[0]) || 1;
            let best = -1, bd = Infinity;
            for (let i = 0; i < xs.length; i++) {
                const dd = ((xs[i] - mx) / sx) ** 2 + ((ys[i] - my) / sy) ** 2;
                if (dd < bd) { bd = dd; best = i; }
            }
            const r = gd.getBoundingClientRect();
            return {x: r.left + xa._offset + xa.d2p(xs[best]), y: r.top + ya._offset + ya.d2p(ys[best])};
        }""")

    def lasso_select(self, frac: float = 0.05, vertices: int = 16, timeout: float = STEP_S) -> Change:
        """A real mouse lasso: press inside the plot area (plotly's .nsewdrag), draw a polygon of
        ``vertices`` points around a drawn data point near the middle of the data (radius ``frac``
        of the plot width/height, kept inside the plot area), release; wait until .wb-gallery has
        .wb-item children.  ``ms``: browser ms from the mouse-up to the gallery change."""
        import math
        page = self.page
        box = self.map_drag_box()
        target = self._lasso_target()
        cx, cy = (target["x"], target["y"]) if target else (box["x"] + box["width"] / 2,
                                                            box["y"] + box["height"] / 2)
        rx, ry = box["width"] * frac, box["height"] * frac
        # keep the polygon inside the drag area
        cx = min(max(cx, box["x"] + rx + 2), box["x"] + box["width"] - rx - 2)
        cy = min(max(cy, box["y"] + ry + 2), box["y"] + box["height"] - ry - 2)
        before = self.text(".wb-gallery") if page.locator(".wb-gallery").count() else ""
        n0 = page.evaluate("window.__wb.gallery.length")
        pts = [(cx + rx * math.cos(2 * math.pi * k / vertices), cy + ry * math.sin(2 * math.pi * k / vertices))
               for k in range(vertices + 1)]
        page.mouse.move(*pts[0])
        page.mouse.down()
        for x, y in pts[1:]:
            page.mouse.move(x, y, steps=2)
        page.mouse.up()
        t_input = page.evaluate("window.__wb.input")
        try:
            rec = self._wait_change("gallery", n0, timeout, pred="rec.items > 0")
        except AssertionError as e:
            ev = page.evaluate("(window.__wb.plotly || []).filter(e => e[1] >= %r - 5000)" % t_input)
            selected = [x for x in ev if x[0] == "plotly_selected"]
            hint = ""
            if selected and any(x[0] in ("plotly_hover", "plotly_unhover") for x in ev):
                hint = ("\nplotly DID emit plotly_selected, next to hover events: the FigureWidget sends "
                        "hover, unhover and selection through one trait (_js2py_pointsCallback) and "
                        "ipywidgets keeps only the last of the changes queued while a message is in "
                        "flight, so a hover/unhover can overwrite the selection. Turn hover events off "
                        "on the map: fig.update_layout(hovermode=False).")
            elif not selected:
                hint = "\nplotly emitted no plotly_selected: the drag did not make a selection."
            cls = LassoLostToHover if "DID emit" in hint else AssertionError
            raise cls(f"{e}\nplotly events since the lasso: {ev}{hint}") from None
        ch = Change(before, rec["text"], rec["t"] - t_input, rec["paint"] - t_input, rec["items"])
        self.timings.setdefault("lasso_to_gallery_ms", []).append(ch.ms)
        # where the time went: plotly's selection event (browser) vs the kernel round trip
        sel = page.evaluate("(t) => (window.__wb.plotly || []).filter(e => e[0] === 'plotly_selected' && e[1] >= t)",
                            t_input)
        if sel:
            self.timings.setdefault("lasso_to_plotly_selected_ms", []).append(sel[0][1] - t_input)
            self.timings.setdefault("lasso_points_selected", []).append(sel[0][2])
        return ch

    def gallery_items(self) -> int:
        return self.page.locator(".wb-gallery .wb-item").count()

    def layout(self) -> dict:
        """Viewport boxes of the map, the filters and the gallery, and of the map's cluster labels."""
        return self.page.evaluate(_LAYOUT_JS)

    def show_panel(self, width: int = 1400, height: int = 1000, settle_s: float = 1.0,
                   timeout: float = STEP_S) -> dict:
        """Resize the window to `width` x `height`, scroll the panel's top to the top of the notebook
        and wait until the map's labels stop changing (the kernel places them for the new size);
        returns :meth:`layout`."""
        page = self.page
        page.set_viewport_size({"width": width, "height": height})
        page.locator(".wb-panel").first.evaluate("e => e.scrollIntoView({block: 'start'})")
        t0, last = time.monotonic(), None
        while True:
            time.sleep(settle_s)
            now = self.layout()
            if now == last or time.monotonic() - t0 > timeout:
                return now
            last = now


# --------------------------------------------------------------------------------------------
# numbers shown in the UI
# --------------------------------------------------------------------------------------------
_NUM = re.compile(r"\d[\d,]*")


def numbers_in(text: str) -> list[int]:
    """All integers in a UI text, thousands separators allowed: 'kept 1,234 of 6,000' -> [1234, 6000]."""
    return [int(m.replace(",", "")) for m in _NUM.findall(text)]


# --------------------------------------------------------------------------------------------
# the whole walk-through, shared by the quickstart test and the stand-in self-test
# --------------------------------------------------------------------------------------------
def check_workbench_ui(lab: LabPage, expected_points: int | None = None,
                       lasso_retries: int = 1) -> dict:
    """Run all cells; check the map, a slider move and a lasso; screenshot each step.

    Map point count: ``len(gd.data[0].x)`` of the .wb-map figure must equal ``expected_points``
    when given, and in any case the first integer in the .wb-map-info text
    ("6,000 of 6,000 rows drawn" -> 6000) when the UI has that element.
    ``lasso_retries``: how many times a lasso lost to hover events (``LassoLostToHover``, a known
    FigureWidget race while the map has hover on) is redrawn, with a warning; 0 makes it fail.
    Returns the timings (also written to timings.json)."""
    lab.shot("opened")
    lab.run_all_cells()
    lab.shot("ran")
    info = lab.wait_for_map()
    lab.shot("map")
    lab.timings["map_points"] = info.points
    assert info.points > 0, "the map drew no points"
    if expected_points is not None:
        assert info.points == expected_points, (
            f"the map drew {info.points:,} points, expected {expected_points:,}")
    if lab.page.locator(".wb-map-info").count():
        stated = numbers_in(lab.text(".wb-map-info"))
        assert stated and stated[0] == info.points, (
            f".wb-map-info says {lab.text('.wb-map-info')!r} but the map drew {info.points:,} points")
    else:
        assert expected_points is not None, (
            "nothing to compare the map's point count with: give expected_points or show the drawn "
            "count as the first number of an element with class wb-map-info")

    counts0 = lab.text(".wb-counts")
    assert numbers_in(counts0), f".wb-counts shows no number: {counts0!r}"
    ch = lab.move_first_slider(presses=1)
    if ch.after == ch.before:   # one step may not change anything: take a bigger move
        ch = lab.move_first_slider(presses=1, key="PageUp")
    lab.shot("slider")
    assert ch.after != counts0 and numbers_in(ch.after) != numbers_in(counts0), (
        f".wb-counts did not change after moving the first slider: {counts0!r} -> {ch.after!r}")

    for attempt in range(lasso_retries + 1):
        try:
            sel = lab.lasso_select(frac=0.05 + 0.02 * attempt)
            break
        except LassoLostToHover as e:
            if attempt == lasso_retries:
                raise
            lab.timings["lasso_lost_to_hover"] = lab.timings.get("lasso_lost_to_hover", 0) + 1
            warnings.warn(f"lasso lost to a hover event, drawing it again: {str(e).splitlines()[-1]}")
    lab.shot("lasso")
    assert sel.items > 0, f"the gallery did not fill after the lasso: {sel.after!r}"
    items = lab.gallery_items()
    assert items > 0, "the gallery has no .wb-item after the lasso"
    lab.timings["gallery_items"] = items
    lab.dump()
    return lab.timings


def label_overlaps(labels: list[dict]) -> list[tuple[str, str]]:
    """Pairs of map labels whose boxes intersect."""
    return [(a["text"], b["text"]) for i, a in enumerate(labels) for b in labels[:i] if boxes_intersect(a, b)]


def check_panel_layout(lab: LabPage, width: int = 1400, height: int = 1000) -> dict:
    """At `width` x `height` (JupyterLab as it opens, file browser included), with the panel scrolled
    to the top of the notebook: the map, the filters and the gallery (with items) lie inside the
    window, no scrolling needed; no two cluster labels on the map meet, before and after a zoom
    (the modebar's zoom-in button); at 800 px wide they fall into one column. Screenshots:
    layout-<w>x<h>.png, layout-zoomed.png, layout-800x<h>.png."""
    rep = lab.show_panel(width, height)
    lab.page.screenshot(path=str(lab.artifacts / f"layout-{width}x{height}.png"))
    lab.timings["layout"] = {k: v for k, v in rep.items() if k != "labels"}
    for name in ("map", "filters", "gallery"):
        assert inside(rep[name], width, height), (
            f"the {name} is not inside the {width}x{height} window without scrolling: {rep[name]}; all: "
            f"{lab.timings['layout']}")
    assert rep["items"] > 0, "the gallery shows no items"
    assert len(rep["labels"]) >= 2, f"the map shows {len(rep['labels'])} cluster labels"
    assert not label_overlaps(rep["labels"]), f"cluster labels overlap: {label_overlaps(rep['labels'])}"
    before = sorted(lab_["text"] for lab_ in rep["labels"])
    lab.page.locator(".wb-map .modebar-btn[data-val='in']").first.click()
    zoomed = lab.show_panel(width, height)
    lab.page.screenshot(path=str(lab.artifacts / "layout-zoomed.png"))
    assert not label_overlaps(zoomed["labels"]), (
        f"cluster labels overlap after a zoom: {label_overlaps(zoomed['labels'])}")
    lab.timings["labels"] = {"whole map": before, "zoomed in": sorted(x["text"] for x in zoomed["labels"])}
    # a narrow window: one column, filters above the map above the gallery
    narrow = lab.show_panel(800, height)
    lab.page.screenshot(path=str(lab.artifacts / f"layout-800x{height}.png"))
    f, m, g = narrow["filters"], narrow["map"], narrow["gallery"]
    assert f["y"] + f["h"] <= m["y"] and m["y"] + m["h"] <= g["y"] and f["x"] == g["x"], (
        f"at 800 px the panel is not one column: {narrow}")
    lab.page.set_viewport_size({"width": width, "height": height})
    return rep


# --------------------------------------------------------------------------------------------
# pytest fixtures
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def chromium():
    """A headless system chromium (playwright Browser)."""
    exe = chromium_executable()   # fails with a clear message before importing playwright
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the browser test needs the playwright python package (pip install playwright;"
                    " no `playwright install`: the system chromium is used)", pytrace=False)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_ARGS,
                                    timeout=60_000)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def lab_for_notebook(chromium, artifacts_dir, tmp_path):
    """Factory: ``lab_for_notebook(path_to_ipynb, name=None) -> LabPage``.

    Copies the notebook's folder to tmp_path/nb, sets WORKBENCH_DEMO_DIR=tmp_path/demo for the
    server and its kernels, starts JupyterLab there, opens the notebook in a fresh 1400x1100
    context and waits for an idle kernel.  Artifacts go to test-artifacts/browser/<name>/.
    At teardown: screenshot, console log, cell errors, timings, server log; then everything stops.
    """
    stack = contextlib.ExitStack()
    pages: list[LabPage] = []

    def make(notebook: Path, name: str | None = None, env: dict | None = None) -> LabPage:
        notebook = Path(notebook)
        name = name or notebook.stem
        out = artifacts_dir / name
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        root = tmp_path / name / "nb"
        shutil.copytree(notebook.parent, root,
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__",
                                                      "demo_world", "*.pyc"))
        demo = tmp_path / name / "demo"
        demo.mkdir()
        server = stack.enter_context(start_jupyter_lab(
            root, out / "jupyter-server.log",
            env={"WORKBENCH_DEMO_DIR": str(demo), **(env or {})}))
        ctx = chromium.new_context(viewport={"width": 1400, "height": 1100})
        stack.callback(ctx.close)
        ctx.set_default_timeout(STEP_S * 1000)
        lab = LabPage(ctx.new_page(), server, out)
        lab.timings["server_start_s"] = server.started_s
        pages.append(lab)
        lab.open_notebook(notebook.name)
        lab.wait_kernel_idle()
        return lab

    try:
        yield make
    finally:
        for lab in pages:
            with contextlib.suppress(Exception):
                lab.shot("final")
            with contextlib.suppress(Exception):
                lab.dump()
        stack.close()
