"""`Workbench(collection)`: the one-panel curation UI over a :class:`workbench.curation.workspace.Workspace`."""
from __future__ import annotations

import html
import threading
import traceback

import ipywidgets as W
import numpy as np

from workbench.curation.workspace import Workspace

from .filters import FilterPanel
from .gallery import Gallery
from .mapview import MapView
from .recipeview import RecipeView


class Workbench:
    """The curation panel. ``Workbench(collection_or_path, recipe=None)``; display it in a notebook.

    - `recipe`: a Recipe, a preset name or a recipe file; by default the workspace's
      :meth:`~workbench.curation.workspace.Workspace.default_recipe` (sliders for the columns the
      collection has among similarity, punsafe and pwatermark).
    - `max_points`: at most this many rows drawn on the map (stratified over clusters).
    - `projection`: "auto" (UMAP when cached, else a quick PCA view while UMAP computes in the
      background), "umap" (compute now), or "pca" (never compute UMAP).
    - `background`: compute UMAP in another process (a
      :class:`~workbench.map.projection.ProjectionJob`, polled on a thread: the panel stays usable;
      ``wb.cancel_map()`` stops it) or here, before returning.
    - `recolor_delay`: seconds the map waits after a slider move before recolouring (repainting
      200k points takes the browser about a second: the counts are painted first; 0 = at once).

    Every control calls the workspace (``wb.workspace``): anything done here can be done in code.
    """

    def __init__(self, collection, recipe=None, max_points: int = 200_000, projection: str = "auto",
                 background: bool = True, encoder=None, projection_params: dict | None = None,
                 recolor_delay: float = 0.25):
        ws = Workspace(collection, recipe, encoder=encoder)
        if recipe is None:
            ws.set_recipe(ws.default_recipe())
        self.workspace = ws
        self.max_points = max_points
        self.projection_params = projection_params or {}
        self.messages = W.HTML()
        self.progress_bar = W.FloatProgress(min=0, max=1, description="", layout=W.Layout(width="240px", visibility="hidden"))
        self.map = MapView(self._on_select, on_zoom=self._on_zoom)
        self.filters = FilterPanel(self)
        self.gallery = Gallery(self)
        self.recipe_view = RecipeView(self)
        self.map.color_by.observe(lambda ch: self.map.recolor(self._kept_drawn()), names="value")
        details = W.Accordion(children=[self.recipe_view.box], titles=("recipe, save/load, export",))
        self.panel = W.VBox([
            W.HBox([self.map.box, self.filters.box], layout=W.Layout(flex_flow="row wrap", width="100%")),
            W.HBox([self.progress_bar, self.messages]),
            self.gallery.box,
            details,
        ])
        self.panel.add_class("wb-panel")
        self.umap_thread: threading.Thread | None = None
        self.umap_job = None  # the background map's ProjectionJob, while one runs
        self.map.cancel_btn.on_click(lambda _b: self.cancel_map())
        self.recolor_delay = recolor_delay
        self._recolor_timer: threading.Timer | None = None
        self.refresh()
        self._draw_map(projection, background)
        self._prepare_first_slider()

    def _prepare_first_slider(self) -> None:
        """On large collections, build the first slider's tile on a thread while the panel is shown
        (the first move is then as fast as the next)."""
        rules = self.workspace.threshold_rules()
        if rules:
            threading.Thread(target=self.workspace.prepare_slider, args=(rules[0][0],), daemon=True,
                             name="workbench-slider").start()

    # -- display ---------------------------------------------------------------------------------
    def _ipython_display_(self):
        from IPython.display import display

        display(self.panel)

    # -- refresh after a change ------------------------------------------------------------------
    def refresh(self) -> None:
        """Rebuild everything that depends on the recipe (after a rule is added, removed, loaded)."""
        self.filters.rebuild()
        c = self.workspace.counts(histogram_of=self.workspace.default_histogram())
        self.filters.show(c)
        self.filters.show_histogram(c.get("histogram"))
        self.gallery.update_sources()
        self.recipe_view.refresh()
        self.map.recolor(self._kept_drawn())
        self._paint_density()

    def _kept_drawn(self) -> np.ndarray:
        """Kept or not, for the drawn points only (no pass over every row)."""
        data = self.map.data
        return self.workspace.kept_mask(data.rows) if data is not None else np.zeros(0, bool)

    def _paint_density(self, window=None) -> None:
        """The density image of every row (UMAP maps only), for `window` or the one shown."""
        if self.map.data is None or self.map.data.method != "umap":
            self.map.show_density(None)
            return
        self.map.show_density(self.workspace.density(window or self.map.density_window, **self.projection_params))

    def _on_zoom(self, window) -> None:
        try:
            self._paint_density(window)
        except Exception as exc:  # noqa: BLE001 - a zoom must never break the panel
            self.say(f"density map: {exc}", error=True)

    def after_change(self, histogram=None) -> None:
        """After a slider move: histogram and recipe text now; map colours and the gallery's
        kept/removed labels a moment later (counts first)."""
        self.filters.show_histogram(histogram)
        self.recipe_view.refresh()
        if self._recolor_timer is not None:
            self._recolor_timer.cancel()
        if self.recolor_delay <= 0:
            self._settle()
            return
        self._recolor_timer = threading.Timer(self.recolor_delay, self._settle)
        self._recolor_timer.daemon = True
        self._recolor_timer.start()

    def _settle(self) -> None:
        self.map.recolor(self._kept_drawn())
        self._paint_density()
        self.gallery.refresh()  # its kept / removed-by labels follow the new thresholds

    def flush(self) -> None:
        """Apply a pending map recolour (and gallery labels) now (scripts and tests)."""
        if self._recolor_timer is not None and self._recolor_timer.is_alive():
            self._recolor_timer.cancel()
            self._settle()

    def say(self, text: str, error: bool = False) -> None:
        colour = "#b00" if error else "#333"
        self.messages.value = f"<span style='color:{colour}'>{html.escape(text)}</span>"

    def progress_callback(self):
        bar = self.progress_bar

        def update(done, total):
            bar.layout.visibility = "visible"
            bar.value = (done / total) if total else 0
            if total and done >= total:
                bar.layout.visibility = "hidden"
        return update

    def run(self, action, what: str, rebuild: bool = True):
        """Run a workspace action, report errors in the panel (never a traceback in the UI)."""
        try:
            out = action()
        except Exception as exc:  # noqa: BLE001 - shown to the curator, who can fix the input
            self.say(f"{what}: {exc}", error=True)
            self._last_traceback = traceback.format_exc()
            return None
        if rebuild:
            self.refresh()
            self.gallery.refresh()
        self.say(f"{what}: done")
        return out

    # -- map -------------------------------------------------------------------------------------
    def _scores(self) -> dict:
        return self.workspace.scores()

    def _draw_map(self, projection: str, background: bool) -> None:
        ws = self.workspace
        cached = projection == "auto" and ws.projection_cached(**self.projection_params)
        first = "umap" if (cached or (projection == "umap" and not background)) else "pca"
        data = ws.map_data(self.max_points, projection=first, **self.projection_params)
        self.map.set_data(data, ws.kept_mask(data.rows), self._scores())
        self._paint_density()
        if first == "pca" and projection in ("auto", "umap"):
            if background:
                self.umap_thread = threading.Thread(target=self._compute_umap, daemon=True, name="workbench-umap")
                self.umap_thread.start()
            else:
                self._compute_umap()

    def _compute_umap(self) -> None:
        bar = self.map.progress
        stages = {"sample": 0.05, "umap": 0.1, "place": 0.7, "done": 1.0}

        def progress(stage, fraction=None):
            bar.layout.visibility = "visible"
            bar.description = stage
            base = stages.get(stage, 0.0)
            bar.value = base if fraction is None else min(1.0, base + (0.3 if stage == "place" else 0.6) * fraction)

        from workbench.map.projection import ProjectionCancelled

        try:
            self.map.status.value = "UMAP computing (the first run in a kernel also compiles numba: about a minute)"
            if threading.current_thread() is not threading.main_thread():
                # in the background: another process computes it (the kernel keeps its GIL for the
                # panel); this thread polls its progress
                self.umap_job = self.workspace.start_projection(**self.projection_params)
                self.map.cancel_btn.layout.visibility = "visible"
                self.umap_job.wait(progress=progress)
            else:
                self.workspace.compute_projection(progress=progress, **self.projection_params)
            data = self.workspace.map_data(self.max_points, projection="umap", **self.projection_params)
            self.map.set_data(data, self.workspace.kept_mask(data.rows), self._scores())
            self._paint_density()
            self.map.status.value = ""
        except ProjectionCancelled:
            self.map.status.value = "UMAP cancelled: the quick view stays"
        except Exception as exc:  # noqa: BLE001 - the quick view stays; say why UMAP is missing
            self.map.status.value = f"<span style='color:#b00'>UMAP failed: {html.escape(str(exc))}</span>"
        finally:
            bar.layout.visibility = "hidden"
            self.map.cancel_btn.layout.visibility = "hidden"

    def cancel_map(self) -> bool:
        """Stop a background UMAP (the quick view stays); True when one was running."""
        job = self.umap_job
        if job is None:
            return False
        stopped = job.cancel()
        if self.umap_thread is not None:
            self.umap_thread.join(10)
        return stopped

    def wait_for_map(self, timeout: float | None = None) -> bool:
        """Block until a background UMAP is drawn (for scripts and tests)."""
        if self.umap_thread is not None:
            self.umap_thread.join(timeout)
            return not self.umap_thread.is_alive()
        return True

    # -- selection, labels -------------------------------------------------------------------------
    def _on_select(self, rows: np.ndarray) -> None:
        self.workspace.select(rows)
        if self.gallery.source.value != "lasso selection":
            self.gallery.source.value = "lasso selection"  # refreshes
        else:
            self.gallery.refresh()
        self.say(f"{len(rows):,} rows selected")

    def train_probe(self, name: str) -> None:
        def go():
            probe, path, col = self.workspace.train_probe(name, progress=self.progress_callback())
            self.workspace.add_probe_rule(name)
            cv = probe.cv
            pr = "" if cv.get("precision") is None else f" (cross-validated precision {cv['precision']:.2f}, recall {cv['recall']:.2f})"
            return pr
        pr = self.run(go, f"probe {name!r}")
        if pr is not None:
            self.say(f"probe {name!r} trained{pr}; it is now a score column and a rule")
