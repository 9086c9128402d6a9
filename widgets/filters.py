"""The filter panel: preset picker, prompt box, dedup toggles, one slider per threshold rule, the
counts (kept/removed and per rule) and the histogram of the rule last moved."""
from __future__ import annotations

import html

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go

from workbench.curation.workspace import Workspace

HIST_WIDTH = 295  # px: the filters column's width (a plot left to autosize may come out wider, and be cut)
SYMBOLS = {"min": ">=", "above": ">", "max": "<=", "below": "<"}


def counts_html(c: dict, warnings=()) -> str:
    """Kept/removed and a per-rule table; rule names come from the recipe (escaped all the same);
    `warnings` (Workspace.warnings: what `workbench apply` prints as ``warning:`` lines) below it."""
    n = max(c["rows"], 1)
    head = (f"<div class='wb-total' style='line-height:1.3;margin-bottom:4px'><b>kept {c['kept']:,}</b> of {c['rows']:,} rows "
            f"({100 * c['kept'] / n:.1f}%) &middot; removed {c['removed']:,}</div>")
    rows = "".join(
        f"<tr><td>{html.escape(r['rule'])}</td><td style='text-align:right'>{r['removed_alone']:,}</td>"
        f"<td style='text-align:right'>{r['removed_in_order']:,}</td><td style='text-align:right'>{r['remaining']:,}</td></tr>"
        for r in c["rules"])
    table = ("<table class='wb-rules' style='font-size:11px;line-height:1.25'><tr><th>rule</th><th>removes alone</th>"
             f"<th>in order</th><th>remaining</th></tr>{rows}</table>") if c["rules"] else "<i>no rules yet</i>"
    warn = "".join(f"<div class='wb-warning' style='color:#b00'>warning: {html.escape(w)}</div>" for w in warnings)
    return head + table + warn


def nice_step(span: float) -> float:
    """A round slider step giving a few hundred positions over `span` (0.001 for a cosine's range)."""
    if not span > 0:
        return 0.001
    return float(10 ** np.floor(np.log10(span / 200)))


def share_html(value: float, keeps: float) -> str:
    """A slider's value and the share of rows its rule keeps (alone, the other rules aside)."""
    return (f"<span style='font-size:11px;color:#444'>{value:.3f} &middot; keeps "
            f"<b>{100 * keeps:.1f}%</b> of rows</span>")


class FilterPanel:
    def __init__(self, workbench):
        self.wb = workbench
        self.preset = W.Dropdown(options=["(choose a preset)", *Workspace.presets()], description="preset",
                                 layout=W.Layout(width="290px"))
        self.preset.observe(self._on_preset, names="value")
        self.prompt = W.Text(placeholder="a watermark", description="prompt", layout=W.Layout(width="190px"),
                             style={"description_width": "50px"})
        self.add_prompt = W.Button(description="add rule", icon="plus", tooltip="add a prompt rule",
                                   layout=W.Layout(width="95px"))
        self.add_prompt.on_click(self._on_prompt)
        near = Workspace.dedup_rule("semantic")["threshold"]
        self.dedup_exact = W.Checkbox(description="exact duplicates (url + caption)", value=False, indent=False)
        self.dedup_semantic = W.Checkbox(description=f"near-duplicates (cos >= {near:g})", value=False, indent=False)
        self.dedup_exact.observe(lambda ch: self._toggle("exact", ch["new"]), names="value")
        self.dedup_semantic.observe(lambda ch: self._toggle("semantic", ch["new"]), names="value")
        self.sliders_box = W.VBox()
        self.sliders_box.add_class("wb-filters")
        self.sliders: list[W.FloatSlider] = []
        self.counts = W.HTML()
        self.counts.add_class("wb-counts")
        self.message = W.HTML()
        self.counts.layout = W.Layout(overflow="auto")
        self.message = W.HTML()
        self.hist = go.FigureWidget(layout=go.Layout(height=170, width=HIST_WIDTH, margin=dict(l=35, r=10, t=25, b=25), barmode="overlay",
                                                     showlegend=False, title=dict(text="", font=dict(size=12)),
                                                     bargap=0))
        self.hist.add_bar(x=[], y=[], marker_color="#bbbbbb", name="all rows")
        self.hist.add_bar(x=[], y=[], marker_color="#1f77b4", name="kept by the other rules")
        self.hist.add_class("wb-hist")
        self.shares: list[W.HTML] = []
        self._slider_rule: list[tuple[int, str]] = []
        self._slider_cols: list[str] = []
        parts = [self.preset, W.HBox([self.prompt, self.add_prompt]), self.dedup_exact, self.dedup_semantic,
                 self.sliders_box, self.counts, W.Box([self.hist]), self.message]
        for w in parts:  # the column scrolls; its parts keep their height
            w.layout.flex = "0 0 auto"
        self.box = W.VBox(parts, layout=W.Layout(min_width="0", overflow="hidden auto"))
        self.box.add_class("wb-filter-column")
        self._syncing = False

    # -- sliders ---------------------------------------------------------------------------------
    def rebuild(self) -> None:
        """One slider per threshold rule of the current recipe."""
        ws = self.wb.workspace
        self.sliders = []
        self._slider_rule = []
        self._slider_cols = []
        for spec in ws.sliders():
            index, column, key = spec["index"], spec["column"], spec["bound"]
            lo, hi, value = spec["low"], spec["high"], spec["value"]
            step = nice_step(hi - lo)
            lo, hi = np.floor(lo / step) * step, np.ceil(hi / step) * step
            value = round(round(value / step) * step, 10)
            s = W.FloatSlider(value=value, min=lo, max=hi, step=step, readout_format=".3f",
                              description=f"{column} {SYMBOLS[key]}", tooltip=f"{column} {SYMBOLS[key]}",
                              continuous_update=False, style={"description_width": "105px"},
                              layout=W.Layout(width="300px"))
            s.observe(self._on_slider, names="value")
            self.sliders.append(s)
            self._slider_rule.append((index, key))
            self._slider_cols.append(column)
        self.shares = [W.HTML(layout=W.Layout(margin="-4px 0 4px 110px")) for _ in self.sliders]
        for h in self.shares:
            h.add_class("wb-share")
        self.sliders_box.children = [W.VBox([s, h]) for s, h in zip(self.sliders, self.shares)]
        self._syncing = True
        try:
            self.dedup_exact.value = ws.dedup_index("exact") is not None
            self.dedup_semantic.value = ws.dedup_index("semantic") is not None
        finally:
            self._syncing = False

    def _on_slider(self, change) -> None:
        i = self.sliders.index(change["owner"])
        index, key = self._slider_rule[i]
        c = self.wb.workspace.set_bounds(index, **{key: round(float(change["new"]), 10)})
        self.show(c)  # counts first: they are what the curator waits for
        self.wb.after_change(histogram=c.get("histogram"))

    # -- counts and histogram --------------------------------------------------------------------
    def show(self, c: dict) -> None:
        self.counts.value = counts_html(c, self.wb.workspace.warnings(c))
        n = max(c["rows"], 1)
        for (index, _key), s, h in zip(self._slider_rule, self.sliders, self.shares):
            if index < len(c["rules"]):
                h.value = share_html(s.value, 1 - c["rules"][index]["removed_alone"] / n)

    def threshold_of(self, column: str) -> float | None:
        """The value of the first slider on `column` (None when no slider moves it)."""
        for s, col in zip(self.sliders, self._slider_cols):
            if col == column:
                return float(s.value)
        return None

    def show_histogram(self, h: dict | None) -> None:
        """Bars over the column's whole binned range (its least to its greatest value), the
        threshold a vertical line."""
        if not h:
            return
        e = np.asarray(h["edges"], dtype=float)
        mid = (e[:-1] + e[1:]) / 2
        t = self.threshold_of(h["column"])
        line = [dict(type="line", xref="x", yref="paper", x0=t, x1=t, y0=0, y1=1,
                     line=dict(color="#d62728", width=2))] if t is not None else []
        with self.hist.batch_update():
            self.hist.data[0].x, self.hist.data[0].y = mid, h["all"]
            self.hist.data[1].x, self.hist.data[1].y = mid, h["kept_by_other_rules"]
            self.hist.layout.title.text = html.escape(h["column"]) + (f" \u00b7 threshold {t:.3f}" if t is not None else "")
            self.hist.layout.xaxis.range = [float(e[0]), float(e[-1])] if len(e) > 1 else None
            self.hist.layout.xaxis.autorange = False if len(e) > 1 else True
            self.hist.layout.shapes = line

    # -- actions ---------------------------------------------------------------------------------
    def _on_preset(self, change) -> None:
        if change["new"] in Workspace.presets():
            self.wb.run(lambda: self.wb.workspace.use_preset(change["new"], progress=self.wb.progress_callback()),
                        f"preset {change['new']}")

    def _on_prompt(self, _button) -> None:
        text = self.prompt.value.strip()
        if text:
            self.wb.run(lambda: self.wb.workspace.add_prompt(text, progress=self.wb.progress_callback()),
                        f"prompt {text!r}")

    def _toggle(self, mode: str, on: bool) -> None:
        if self._syncing:
            return
        ws = self.wb.workspace
        if on != (ws.dedup_index(mode) is not None):
            self.wb.run(lambda: ws.set_dedup(mode, on, progress=self.wb.progress_callback()), f"dedup_{mode}")
