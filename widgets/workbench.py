"""`Workbench(collection)`: the one-panel curation UI over a :class:`workbench.curation.workspace.Workspace`."""
from __future__ import annotations

import html
import threading
import traceback

import ipywidgets as W
import numpy as np

from workbench.curation.workspace import Workspace

from .compareview import CompareView
from .filters import FilterPanel
from .gallery import Gallery
from .impactview import ImpactView, cluster_share
from .mapview import SHARE_MODE, MapView
from .recipeview import RecipeView

WORK_HEIGHT = "640px"  # the filters and gallery columns, beside the map (each scrolls inside)
# the work area: filters, map (`map_size`) and gallery side by side while they fit (about 950 px with the
# default map), each on its
# own line below that (flex-wrap: the one-column fallback of a narrow screen)
COLUMNS = {"filters": dict(flex="0 0 300px", width="300px", height=WORK_HEIGHT, margin="0 8px 8px 0"),
           "map": dict(flex="0 0 auto", margin="0 8px 8px 0"),
           "gallery": dict(flex="1 1 180px", min_width="180px", height=WORK_HEIGHT, margin="0 0 8px 0")}


class Workbench:
    """The curation panel. ``Workbench(collection_or_path, recipe=None)``; display it in a notebook.

    - `recipe`: a Recipe, a preset name or a recipe file; by default the workspace's
      :meth:`~workbench.curation.workspace.Workspace.default_recipe` (sliders for the columns the
      collection has among similarity, punsafe and pwatermark).
    - `max_points`: at most this many rows drawn on the map (stratified over clusters).
    - `map_size`: the map's (width, height) in pixels; filters, map and gallery sit side by side
      when the notebook is wider than about 500 px more than the map, in one column otherwise.
    - `projection`: "auto" (UMAP when cached, else a quick PCA view while UMAP computes in the
      background), "umap" (compute now), or "pca" (never compute UMAP).
    - `background`: compute UMAP in another process (a
      :class:`~workbench.map.projection.ProjectionJob`, polled on a thread: the panel stays usable;
      ``wb.cancel_map()`` stops it) or here, before returning.
    - `recolor_delay`: seconds the map waits after a slider move before recolouring (repainting
      200k points takes the browser about a second: the counts are painted first; 0 = at once).
    - `impact_delay`: seconds after the last slider move before the per-cluster impact (a pass
      over every row) is computed again (0 = at once); over `impact_auto_rows` rows it waits six
      times as long (slider moves stay answered from the slider tile), and "update now" computes it.

    Every control calls the workspace (``wb.workspace``): anything done here can be done in code.
    """

    def __init__(self, collection, recipe=None, max_points: int = 200_000, projection: str = "auto",
                 background: bool = True, encoder=None, projection_params: dict | None = None,
                 recolor_delay: float = 0.25, map_size: tuple[int, int] = (440, 520), impact_delay: float = 0.5, impact_auto_rows: int = 2_000_000):
        ws = Workspace(collection, recipe, encoder=encoder)
        if recipe is None:
            ws.set_recipe(ws.default_recipe())
        self.workspace = ws
        self.max_points = max_points
        self.projection_params = projection_params or {}
        self.messages = W.HTML()
        self.progress_bar = W.FloatProgress(min=0, max=1, description="", layout=W.Layout(width="240px", visibility="hidden"))
        self.map = MapView(self._on_select, on_zoom=self._on_zoom, width=map_size[0], height=map_size[1])
        self.filters = FilterPanel(self)
        self.gallery = Gallery(self)
        self.recipe_view = RecipeView(self)
        self.impact = ImpactView(self.select_cluster)
        self.impact.update_btn.on_click(lambda _b: self.update_impact())
        self.compare = CompareView(self, Workspace.presets())
        self.map.color_by.observe(self._on_color_by, names="value")
        for name, box in (("filters", self.filters.box), ("map", self.map.box), ("gallery", self.gallery.box)):
            for k, v in COLUMNS[name].items():
                setattr(box.layout, k, v)
        self.work = W.Box([self.filters.box, self.map.box, self.gallery.box],
                          layout=W.Layout(display="flex", flex_flow="row wrap", align_items="flex-start", width="100%"))
        self.work.add_class("wb-work")
        self.tabs = W.Tab(children=[self.impact.box, self.compare.box, self.recipe_view.box],
                          titles=("who is removed", "compare with...", "recipe & export"))
        self.panel = W.VBox([self.work, W.HBox([self.progress_bar, self.messages]), self.tabs],
                            layout=W.Layout(width="100%"))
        self.panel.add_class("wb-panel")
        self.impact_delay, self.impact_auto_rows = impact_delay, impact_auto_rows
        self._impact_timer: threading.Timer | None = None
        self.impact_records: list[dict] = []
        self._ready = False
        self.umap_thread: threading.Thread | None = None
        self.umap_job = None  # the background map's ProjectionJob, while one runs
        self.map.cancel_btn.on_click(lambda _b: self.cancel_map())
        self.recolor_delay = recolor_delay
        self._recolor_timer: threading.Timer | None = None
        self.refresh()
        self._draw_map(projection, background)
        self._ready = True
        if len(ws.live.rows) <= impact_auto_rows:
            self.update_impact()
        else:  # not while the first slider's tile is built: slider moves come first
            self.impact.show_message(f"{len(ws.live.rows):,} rows: the per-cluster impact is computed "
                                     f"{6 * impact_delay:g} s after the last slider move, or now with 'update now'")
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
        if self._ready:  # the first one waits for the map's clusters (__init__)
            self._schedule_impact(at_once=len(self.workspace.live.rows) <= self.impact_auto_rows)
            self.compare.mark_stale()
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
        self.compare.mark_stale()
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
        self._schedule_impact()

    def flush(self) -> None:
        """Apply a pending map recolour (and gallery labels) and impact update now (scripts and tests)."""
        if self._recolor_timer is not None and self._recolor_timer.is_alive():
            self._recolor_timer.cancel()
            self._settle()
        if self._impact_timer is not None and self._impact_timer.is_alive():
            self._impact_timer.cancel()
            self.update_impact()

    # -- who each rule removes -------------------------------------------------------------------
    def _schedule_impact(self, at_once: bool = False) -> None:
        """Recompute the per-cluster impact a moment after the last change (never per drag event)."""
        if self._impact_timer is not None:
            self._impact_timer.cancel()
        delay = self.impact_delay * (1 if len(self.workspace.live.rows) <= self.impact_auto_rows else 6)
        if at_once or delay <= 0:
            self.update_impact()
            return
        self._impact_timer = threading.Timer(delay, self.update_impact)
        self._impact_timer.daemon = True
        self._impact_timer.start()
        if self.impact_records:
            self.impact.show_message(f"the recipe changed: updating in {delay:g} s (or now with 'update now')")

    def update_impact(self) -> None:
        """Per cluster, the removed share against the overall share (Workspace.cluster_impact)."""
        ws = self.workspace
        try:
            records = ImpactView.records_of(ws.cluster_impact())
            c = ws.counts()
        except Exception as exc:  # noqa: BLE001 - the rest of the panel stays usable; say why
            self.impact.show_message(f"per-cluster impact unavailable: {exc}", error=True)
            self._last_traceback = traceback.format_exc()
            return
        self.impact_records = records
        self.impact.show(records, c["removed"] / max(c["rows"], 1), [r.name for r in ws.recipe.rules])
        self.map.set_cluster_values(cluster_share(records))
        if self.map.color_by.value == SHARE_MODE:
            self.map.recolor(self._kept_drawn())

    def _on_color_by(self, _change) -> None:
        if self.map.color_by.value == SHARE_MODE and not self.impact_records:
            self.update_impact()
        self.map.recolor(self._kept_drawn())

    def select_cluster(self, cluster: int, label: str = "") -> None:
        """A bar click: select `cluster` (its drawn points on the map, its rows in the workspace) and
        show in the gallery the rows the recipe removes from it."""
        ws = self.workspace
        try:
            members = ws.cluster_members(cluster)
            removed = ws.cluster_removed(cluster, limit=self.gallery.limit)
        except Exception as exc:  # noqa: BLE001
            self.say(f"cluster {cluster}: {exc}", error=True)
            return
        ws.select(members)
        self.map.highlight_cluster(cluster)
        self.gallery.show_rows(f"removed from cluster {cluster}: {label}"[:80], removed)
        self.say(f"cluster {cluster} ({label}): {len(members):,} rows selected; the gallery shows what the recipe "
                 f"removes from it")

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
