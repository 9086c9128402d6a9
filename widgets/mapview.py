"""The map: a plotly scatter (WebGL) of a stratified sample of rows, coloured by cluster, by a
score, or by kept/removed, over a density image of every row (kept blue, removed red, per pixel);
lasso or box selection reports row ids; a zoom asks for the window's density again."""
from __future__ import annotations

import html

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go

KEPT_COLORS = [[0.0, "#d62728"], [0.5, "#d62728"], [0.5, "#1f77b4"], [1.0, "#1f77b4"]]  # removed red, kept blue


class MapView:
    def __init__(self, on_select, height: int = 520, on_zoom=None):
        self.on_select = on_select
        self.on_zoom = on_zoom
        self.density_window = None
        self.data = None
        self.fig = go.FigureWidget(layout=go.Layout(
            height=height, margin=dict(l=10, r=10, t=30, b=10), dragmode="lasso", hovermode=False,
            xaxis=dict(visible=False), yaxis=dict(visible=False), showlegend=False,
            title=dict(text="", font=dict(size=13))))
        # no hover: hover, unhover and selection share one widget message, and an unhover right after
        # a lasso can overwrite the selection before it reaches the kernel
        self.fig.add_scattergl(x=[], y=[], mode="markers", marker=dict(size=3, opacity=0.7), hoverinfo="skip")
        self.fig.data[0].on_selection(self._selected)
        self.fig.layout.on_change(self._zoomed, "xaxis.range", "yaxis.range")
        self.fig.add_class("wb-map")
        self.color_by = W.Dropdown(options=["cluster", "kept / removed"], value="kept / removed",
                                   description="colour", layout=W.Layout(width="260px"))
        self.info = W.HTML()
        self.info.add_class("wb-map-info")
        self.progress = W.FloatProgress(min=0, max=1, description="", layout=W.Layout(width="200px", visibility="hidden"))
        self.cancel_btn = W.Button(description="cancel UMAP", icon="stop",
                                   layout=W.Layout(width="130px", visibility="hidden"))
        self.status = W.HTML()
        self.box = W.VBox([W.HBox([self.color_by, self.info, self.progress, self.cancel_btn]), self.status, self.fig],
                          layout=W.Layout(flex="1 1 560px", min_width="420px"))

    # -- data ------------------------------------------------------------------------------------
    def set_data(self, data, kept: np.ndarray, scores: dict[str, np.ndarray]) -> None:
        """Draw `data` (a workbench.curation.workspace.MapData); `kept` is per drawn row (in
        ``data.rows`` order), `scores` over all rows."""
        self.data = data
        self.scores = scores
        options = ["cluster", "kept / removed", *sorted(scores)]
        value = self.color_by.value if self.color_by.value in options else "kept / removed"
        self.color_by.options = options
        self.color_by.value = value
        with self.fig.batch_update():
            t = self.fig.data[0]
            t.x, t.y, t.customdata = data.x, data.y, data.rows
            self.fig.layout.annotations = self._labels(data)
            self.fig.layout.title.text = ("UMAP" if data.method == "umap" else "quick view (PCA); UMAP computing...") \
                if data.method != "umap" else "UMAP"
            self._paint(kept)
        self.info.value = (f"<span style='white-space:nowrap'><b>{len(data.rows):,}</b> of {data.total:,} rows drawn "
                           f"({'UMAP' if data.method == 'umap' else 'PCA'})</span>")

    @staticmethod
    def _labels(data) -> list[dict]:
        out = []
        for cid, words in sorted(data.labels.items())[:40]:
            m = data.cluster == cid
            if m.sum() < 20:
                continue
            out.append(dict(x=float(np.median(data.x[m])), y=float(np.median(data.y[m])), showarrow=False,
                            text=html.escape(str(words)), font=dict(size=10, color="#222"),
                            bgcolor="rgba(255,255,255,0.6)"))
        return out

    def recolor(self, kept: np.ndarray) -> None:
        with self.fig.batch_update():
            self._paint(kept)

    def _paint(self, kept: np.ndarray) -> None:
        if self.data is None:
            return
        t = self.fig.data[0]
        mode = self.color_by.value
        if mode == "cluster":
            t.marker.color, t.marker.colorscale, t.marker.showscale = self.data.cluster, "Turbo", False
        elif mode == "kept / removed":
            t.marker.color = np.asarray(kept).astype(np.uint8)
            t.marker.colorscale, t.marker.cmin, t.marker.cmax, t.marker.showscale = KEPT_COLORS, 0, 1, False
        else:
            v = np.asarray(self.scores[mode], dtype=np.float32)[self.data.rows]
            t.marker.color, t.marker.colorscale, t.marker.showscale = v, "Viridis", True
            t.marker.cmin, t.marker.cmax = float(np.nanmin(v)) if np.isfinite(v).any() else 0, \
                float(np.nanmax(v)) if np.isfinite(v).any() else 1

    # -- every row: the density image ------------------------------------------------------------
    def show_density(self, raster) -> None:
        """Put `raster` (a workbench.map.density.Raster, or None: no image) under the points."""
        if raster is None:
            self.fig.layout.images = []
            self.density_window = None
            return
        x0, x1, y0, y1 = raster.window
        self.density_window = raster.window
        self.fig.layout.images = [dict(source=raster.data_uri(), xref="x", yref="y", x=x0, y=y1, sizex=x1 - x0,
                                       sizey=y1 - y0, sizing="stretch", layer="below", opacity=1.0)]

    def _zoomed(self, layout, xrange, yrange) -> None:
        if self.on_zoom is None or self.density_window is None or xrange is None or yrange is None:
            return
        window = (float(min(xrange)), float(max(xrange)), float(min(yrange)), float(max(yrange)))
        if window != self.density_window:
            self.on_zoom(window)

    # -- selection -------------------------------------------------------------------------------
    def _selected(self, trace, points, selector) -> None:
        if self.data is None:
            return
        idx = np.asarray(points.point_inds, dtype=np.int64)
        self.on_select(self.data.rows[idx] if len(idx) else np.zeros(0, np.int64))

    def select_points(self, point_indices) -> None:
        """What a lasso does, from code: select drawn points by position in the trace."""
        class _P:  # noqa: N801 - the shape plotly passes
            point_inds = list(point_indices)

        self._selected(self.fig.data[0], _P(), None)
