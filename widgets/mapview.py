"""The map: a plotly scatter (WebGL) of a stratified sample of rows, coloured by cluster, by a
score, by kept/removed, or by the removed share of each point's cluster, over a density image of
every row (kept blue, removed red, per pixel); lasso or box selection reports row ids; a zoom asks
for the window's density again and places the cluster labels for the new window (never two
overlapping: :func:`place_labels`)."""
from __future__ import annotations

import html

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go

KEPT_COLORS = [[0.0, "#d62728"], [0.5, "#d62728"], [0.5, "#1f77b4"], [1.0, "#1f77b4"]]  # removed red, kept blue
SHARE_MODE = "removed share of my cluster"
LABEL_FONT = 10          # px
CHAR_PX = 6.6            # a generous width of one character at LABEL_FONT (Arial averages ~5.5 px)
LINE_PX = 16             # the height of a label's box (text, padding and border)
PAD_PX = 4               # room kept free around each label
MIN_POINTS = 20          # a cluster with fewer drawn points gets no label
MAX_LABELS = 40
MARGIN = dict(l=10, r=10, t=30, b=10)


def label_box(x: float, y: float, text: str, units: tuple[float, float]) -> tuple[float, float, float, float]:
    """(x0, x1, y0, y1) of a label centred on (x, y), in data units (`units`: data per pixel, x and y)."""
    w = (len(text) * CHAR_PX + 2 * PAD_PX) * units[0] / 2
    h = (LINE_PX + 2 * PAD_PX) * units[1] / 2
    return x - w, x + w, y - h, y + h


def place_labels(candidates: list[tuple[float, float, str, int]], window: tuple[float, float, float, float],
                 size_px: tuple[float, float]) -> list[int]:
    """Which labels to draw: greedily by weight (largest cluster first), a label is kept when its
    estimated box lies in `window` (x0, x1, y0, y1) and meets no box already kept. `candidates`:
    (x, y, text, weight); `size_px`: the plot area's width and height in pixels. Returns the kept
    candidates' indices, heaviest first."""
    x0, x1, y0, y1 = window
    units = ((x1 - x0) / max(size_px[0], 1.0), (y1 - y0) / max(size_px[1], 1.0))
    kept, boxes = [], []
    for i in sorted(range(len(candidates)), key=lambda i: (-candidates[i][3], i)):
        x, y, text, _ = candidates[i]
        if not text:
            continue
        b = label_box(x, y, text, units)
        if b[0] < x0 or b[1] > x1 or b[2] < y0 or b[3] > y1:
            continue
        if any(b[0] < o[1] and o[0] < b[1] and b[2] < o[3] and o[2] < b[3] for o in boxes):
            continue
        kept.append(i)
        boxes.append(b)
    return kept


class MapView:
    def __init__(self, on_select, height: int = 520, on_zoom=None, width: int = 440):
        self.on_select = on_select
        self.on_zoom = on_zoom
        self.height = height
        self.density_window = None
        self.data = None
        self.cluster_values: dict[int, float] | None = None  # per cluster, for SHARE_MODE
        self._candidates: list = []
        self._label_key = None
        # a fixed width: the notebook's plotly widget sizes itself once, before it is on the page (it
        # would draw at 700 px whatever its column); the labels are placed for this width
        self.fig = go.FigureWidget(layout=go.Layout(
            height=height, width=width, margin=MARGIN, dragmode="lasso", hovermode=False,
            xaxis=dict(visible=False), yaxis=dict(visible=False), showlegend=False,
            title=dict(text="", font=dict(size=13)), modebar=dict(orientation="v")))
        # no hover: hover, unhover and selection share one widget message, and an unhover right after
        # a lasso can overwrite the selection before it reaches the kernel
        self.fig.add_scattergl(x=[], y=[], mode="markers", marker=dict(size=3, opacity=0.7), hoverinfo="skip")
        self.fig.data[0].on_selection(self._selected)
        self.fig.layout.on_change(self._zoomed, "xaxis.range", "yaxis.range")
        self.fig.layout.on_change(lambda *_: self.relabel(), "width")
        self.fig.add_class("wb-map")
        self.color_by = W.Dropdown(options=["cluster", "kept / removed", SHARE_MODE], value="kept / removed",
                                   description="colour", layout=W.Layout(width="250px"),
                                   style={"description_width": "45px"})
        self.info = W.HTML()
        self.info.add_class("wb-map-info")
        self.progress = W.FloatProgress(min=0, max=1, description="", layout=W.Layout(width="200px", visibility="hidden"))
        self.cancel_btn = W.Button(description="cancel UMAP", icon="stop",
                                   layout=W.Layout(width="130px", visibility="hidden"))
        self.status = W.HTML()
        self.box = W.VBox([W.HBox([self.color_by, self.info, self.progress, self.cancel_btn],
                                  layout=W.Layout(flex_flow="row wrap")), self.status, self.fig],
                          layout=W.Layout(width=f"{width}px", min_width=f"{width}px"))
        self.box.add_class("wb-map-column")

    # -- data ------------------------------------------------------------------------------------
    def set_data(self, data, kept: np.ndarray, scores: dict[str, np.ndarray]) -> None:
        """Draw `data` (a workbench.curation.workspace.MapData); `kept` is per drawn row (in
        ``data.rows`` order), `scores` over all rows."""
        self.data = data
        self.scores = scores
        options = ["cluster", "kept / removed", SHARE_MODE, *sorted(scores)]
        value = self.color_by.value if self.color_by.value in options else "kept / removed"
        self.color_by.options = options
        self.color_by.value = value
        self._candidates = self._label_candidates(data)
        self._label_key = None
        with self.fig.batch_update():
            t = self.fig.data[0]
            t.x, t.y, t.customdata = data.x, data.y, data.rows
            t.selectedpoints = None
            self.fig.layout.annotations = self._labels()
            self.fig.layout.title.text = ("UMAP" if data.method == "umap" else "quick view (PCA); UMAP computing...") \
                if data.method != "umap" else "UMAP"
            self._paint(kept)
        self.info.value = (f"<span style='white-space:nowrap'><b>{len(data.rows):,}</b> of {data.total:,} rows drawn "
                           f"({'UMAP' if data.method == 'umap' else 'PCA'})</span>")

    # -- cluster labels --------------------------------------------------------------------------
    @staticmethod
    def _label_candidates(data) -> list[tuple[float, float, str, int]]:
        out = []
        for cid, words in sorted(data.labels.items()):
            m = data.cluster == cid
            n = int(m.sum())
            if n < MIN_POINTS or not str(words):
                continue
            out.append((float(np.median(data.x[m])), float(np.median(data.y[m])), str(words), n))
        return out

    def _plot_px(self) -> tuple[float, float]:
        """The plot area in pixels: the browser's size when it has reported it, else a narrow guess
        (a narrower plot keeps fewer labels: the guess errs on the side of no overlap)."""
        d = getattr(self.fig, "_layout_defaults", None) or {}
        width = self.fig.layout.width or d.get("width") or 420
        height = self.fig.layout.height or d.get("height") or self.height
        return (max(float(width) - MARGIN["l"] - MARGIN["r"], 50.0), max(float(height) - MARGIN["t"] - MARGIN["b"], 50.0))

    def _window(self) -> tuple[float, float, float, float]:
        """The axes' current ranges (after a zoom), else the data's extent padded as plotly's
        autorange pads a scatter (a little more: a wider range makes each label's box larger)."""
        xr, yr = self.fig.layout.xaxis.range, self.fig.layout.yaxis.range
        if xr is None or yr is None:
            d = getattr(self.fig, "_layout_defaults", None) or {}
            xr = xr or (d.get("xaxis") or {}).get("range")
            yr = yr or (d.get("yaxis") or {}).get("range")
        if xr is not None and yr is not None:
            return float(min(xr)), float(max(xr)), float(min(yr)), float(max(yr))
        x, y = self.data.x, self.data.y
        if not len(x):
            return 0.0, 1.0, 0.0, 1.0
        px, py = 0.08 * (float(x.max() - x.min()) or 1.0), 0.08 * (float(y.max() - y.min()) or 1.0)
        return float(x.min()) - px, float(x.max()) + px, float(y.min()) - py, float(y.max()) + py

    def _labels(self) -> list[dict]:
        if self.data is None or not self._candidates:
            return []
        window, size = self._window(), self._plot_px()
        self._label_key = (window, size)
        keep = place_labels(self._candidates, window, size)[:MAX_LABELS]
        return [dict(x=self._candidates[i][0], y=self._candidates[i][1], showarrow=False,
                     text=html.escape(self._candidates[i][2]), font=dict(size=LABEL_FONT, color="#222"),
                     bgcolor="rgba(255,255,255,0.6)") for i in keep]

    def relabel(self) -> None:
        """Place the labels again for the current window and plot size (after a zoom or resize)."""
        if self.data is None:
            return
        window, size = self._window(), self._plot_px()
        if (window, size) != self._label_key:
            self.fig.layout.annotations = self._labels()

    # -- colours ---------------------------------------------------------------------------------
    def recolor(self, kept: np.ndarray) -> None:
        with self.fig.batch_update():
            self._paint(kept)

    def set_cluster_values(self, values: dict[int, float] | None) -> None:
        """Per cluster id, the value SHARE_MODE colours its points by (the removed share)."""
        self.cluster_values = values

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
        elif mode == SHARE_MODE:
            vals = self.cluster_values or {}
            v = np.array([vals.get(int(c), np.nan) for c in self.data.cluster], dtype=np.float32)
            hi = float(np.nanmax(v)) if np.isfinite(v).any() else 1.0
            t.marker.color, t.marker.colorscale, t.marker.showscale = np.nan_to_num(v, nan=0.0), "Reds", True
            t.marker.cmin, t.marker.cmax = 0.0, max(hi, 1e-9)
            t.marker.colorbar = dict(title=dict(text="removed", side="right"), tickformat=".0%", thickness=10)
        else:
            v = np.asarray(self.scores[mode], dtype=np.float32)[self.data.rows]
            t.marker.color, t.marker.colorscale, t.marker.showscale = v, "Viridis", True
            t.marker.cmin, t.marker.cmax = float(np.nanmin(v)) if np.isfinite(v).any() else 0, \
                float(np.nanmax(v)) if np.isfinite(v).any() else 1
            t.marker.colorbar = dict(title=dict(text=html.escape(mode), side="right"), tickformat="", thickness=10)

    def highlight_cluster(self, cluster: int | None) -> np.ndarray:
        """Mark the drawn points of `cluster` as selected (the others dimmed); None clears it.
        Returns the drawn positions marked."""
        if self.data is None:
            return np.zeros(0, np.int64)
        idx = np.nonzero(self.data.cluster == cluster)[0] if cluster is not None else np.zeros(0, np.int64)
        self.fig.data[0].selectedpoints = idx.tolist() if cluster is not None else None
        return idx

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
        if xrange is None or yrange is None:
            return
        self.relabel()  # more labels fit in a zoomed-in window; none may overlap
        if self.on_zoom is None or self.density_window is None:
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
