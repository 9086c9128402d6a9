"""Who the recipe removes: the removed share of each map cluster (bars, with the binomial interval)
against the overall share (a line), and a table with each rule's removals alone. A click on a bar
selects that cluster on the map and fills the gallery with what was removed from it.

The numbers are :meth:`workbench.curation.workspace.Workspace.cluster_impact`'s; this view only
draws them. Cluster labels are caption words (web text): escaped before they are rendered.
"""
from __future__ import annotations

import html

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go

MAX_BARS = 30     # the clusters furthest from the overall share
TABLE_ROWS = 12


def short_label(cluster: int, label: str, width: int = 22) -> str:
    text = f"{cluster}: {label}" if label else f"cluster {cluster}"
    return text if len(text) <= width else text[: width - 1] + "\u2026"


def impact_table_html(records: list[dict], rule_names: list[str], limit: int = TABLE_ROWS) -> str:
    """The first `limit` clusters of the impact table as HTML (labels and rule names escaped)."""
    head = "".join(f"<th title='{html.escape(n)}'>{html.escape(n if len(n) <= 18 else n[:17] + '…')}</th>"
                   for n in rule_names)
    body = []
    for r in records[:limit]:
        rules = "".join(f"<td style='text-align:right'>{int(v):,}</td>" for v in (r.get("rules") or []))
        dep = float(r["departure"])
        colour = "#b00" if dep > 0 else ("#1f5fa8" if dep < 0 else "#444")
        body.append(
            f"<tr><td>{int(r['cluster'])}</td><td>{html.escape(str(r['label'] or ''))}</td>"
            f"<td style='text-align:right'>{int(r['rows']):,}</td><td style='text-align:right'>{int(r['removed']):,}</td>"
            f"<td style='text-align:right;color:{colour}'>{100 * r['removed_share']:.1f}%</td>"
            f"<td style='text-align:right'>{100 * r['share_low']:.1f}&ndash;{100 * r['share_high']:.1f}%</td>"
            f"{rules}</tr>")
    return ("<table class='wb-impact-table' style='font-size:11px;line-height:1.25'><tr><th>cluster</th><th>label</th><th>rows</th>"
            "<th>removed</th><th>share</th><th>95% interval</th>" + head + "</tr>" + "".join(body) + "</table>")


class ImpactView:
    """The "who each rule removes" view; ``on_pick(cluster, label)`` is called on a bar click."""

    def __init__(self, on_pick, height: int = 300, width: int = 900):
        self.on_pick = on_pick
        self.records: list[dict] = []
        self._shown: list[dict] = []
        self.overall: float | None = None
        self.fig = go.FigureWidget(layout=go.Layout(
            height=height, width=width, margin=dict(l=55, r=10, t=30, b=100), showlegend=False, hovermode="closest",
            yaxis=dict(tickformat=".0%", title=dict(text="removed share")),
            xaxis=dict(tickangle=-40, tickfont=dict(size=10)),
            title=dict(text="removed share per cluster (click a bar)", font=dict(size=12))))
        self.fig.add_bar(x=[], y=[], marker_color=[], hovertemplate="%{customdata}<extra></extra>")
        self.fig.data[0].on_click(self._clicked)
        self.fig.add_class("wb-impact")
        self.note = W.HTML()
        self.note.add_class("wb-impact-note")
        self.table = W.HTML(layout=W.Layout(overflow="auto"))
        self.update_btn = W.Button(description="update now", icon="refresh", layout=W.Layout(width="135px", flex="0 0 auto"))
        self.box = W.VBox([W.HBox([self.update_btn, self.note]), self.fig, self.table])

    def show(self, records: list[dict], overall: float, rule_names: list[str]) -> None:
        """`records`: cluster_impact's rows (as dicts, its order: furthest from the overall share
        first); `overall`: removed / rows of the whole collection."""
        self.records = list(records)[:MAX_BARS]
        self.overall = float(overall)
        shown = sorted(self.records, key=lambda r: -float(r["removed_share"]))
        colours = ["#d62728" if r["departure"] > 0 else ("#1f77b4" if r["departure"] < 0 else "#999999") for r in shown]
        hover = [f"{html.escape(str(r['label'] or ''))}<br>{int(r['removed']):,} of {int(r['rows']):,} removed "
                 f"({100 * r['removed_share']:.1f}%, 95% interval {100 * r['share_low']:.1f}-{100 * r['share_high']:.1f}%)"
                 for r in shown]
        with self.fig.batch_update():
            bar = self.fig.data[0]
            bar.x = [html.escape(short_label(int(r["cluster"]), str(r["label"] or ""))) for r in shown]
            bar.y = [float(r["removed_share"]) for r in shown]
            bar.customdata = hover
            bar.marker.color = colours
            bar.error_y = dict(type="data", symmetric=False, thickness=1, width=2, color="#555",
                               array=[float(r["share_high"] - r["removed_share"]) for r in shown],
                               arrayminus=[float(r["removed_share"] - r["share_low"]) for r in shown])
            self.fig.layout.shapes = [dict(type="line", xref="paper", yref="y", x0=0, x1=1, y0=overall, y1=overall,
                                           line=dict(color="#333", dash="dash", width=1.5))]
            self.fig.layout.annotations = [dict(xref="paper", yref="y", x=1, y=overall, xanchor="right", yanchor="bottom",
                                                showarrow=False, text=f"overall {100 * overall:.1f}%",
                                                font=dict(size=10, color="#333"))]
        self._shown = shown
        more = len(records) - len(self.records) if hasattr(records, "__len__") else 0
        self.table.value = impact_table_html(self.records, rule_names)
        self.note.value = (f"<span style='font-size:12px'>{len(self.records)} clusters furthest from the overall share "
                           f"({100 * overall:.1f}% removed)" + (f"; {more} more in <code>Workspace.cluster_impact()</code>"
                                                                if more > 0 else "")
                           + ". Red: above it beyond the 95% interval; blue: below; grey: within.</span>")

    def show_message(self, text: str, error: bool = False) -> None:
        colour = "#b00" if error else "#333"
        self.note.value = f"<span style='font-size:12px;color:{colour}'>{html.escape(text)}</span>"

    def _clicked(self, trace, points, state) -> None:
        idx = list(getattr(points, "point_inds", []) or [])
        if idx:
            self.pick(int(idx[0]))

    def pick(self, position: int) -> None:
        """What a click on bar `position` (left to right) does."""
        r = self._shown[position]
        self.on_pick(int(r["cluster"]), str(r["label"] or ""))

    def bar_position(self, cluster: int) -> int:
        """The position of `cluster`'s bar (for scripts and tests)."""
        return next(i for i, r in enumerate(self._shown) if int(r["cluster"]) == cluster)

    @staticmethod
    def records_of(frame) -> list[dict]:
        """A polars frame (cluster_impact's) as a list of dicts, its order kept."""
        return list(frame.iter_rows(named=True))


def cluster_share(records: list[dict]) -> dict[int, float]:
    """cluster id -> removed share, for the map's colouring."""
    return {int(r["cluster"]): float(r["removed_share"]) for r in records if np.isfinite(float(r["removed_share"]))}
