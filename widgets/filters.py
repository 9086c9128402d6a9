"""The filter panel: preset picker, prompt box, dedup toggles, one slider per threshold rule, the
counts (kept/removed and per rule) and the histogram of the rule last moved."""
from __future__ import annotations

import html

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go

from workbench.curation.workspace import Workspace

SYMBOLS = {"min": ">=", "above": ">", "max": "<=", "below": "<"}


def counts_html(c: dict, warnings=()) -> str:
    """Kept/removed and a per-rule table; rule names come from the recipe (escaped all the same);
    `warnings` (Workspace.warnings: what `workbench apply` prints as ``warning:`` lines) below it."""
    n = max(c["rows"], 1)
    head = (f"<div class='wb-total'><b>kept {c['kept']:,}</b> of {c['rows']:,} rows "
            f"({100 * c['kept'] / n:.1f}%) &middot; removed {c['removed']:,}</div>")
    rows = "".join(
        f"<tr><td>{html.escape(r['rule'])}</td><td style='text-align:right'>{r['removed_alone']:,}</td>"
        f"<td style='text-align:right'>{r['removed_in_order']:,}</td><td style='text-align:right'>{r['remaining']:,}</td></tr>"
        for r in c["rules"])
    table = ("<table class='wb-rules' style='font-size:12px'><tr><th>rule</th><th>removes alone</th>"
             f"<th>in order</th><th>remaining</th></tr>{rows}</table>") if c["rules"] else "<i>no rules yet</i>"
    warn = "".join(f"<div class='wb-warning' style='color:#b00'>warning: {html.escape(w)}</div>" for w in warnings)
    return head + table + warn


def nice_step(span: float) -> float:
    """A round slider step giving a few hundred positions over `span` (0.001 for a cosine's range)."""
    if not span > 0:
        return 0.001
    return float(10 ** np.floor(np.log10(span / 200)))


class FilterPanel:
    def __init__(self, workbench):
        self.wb = workbench
        self.preset = W.Dropdown(options=["(choose a preset)", *Workspace.presets()], description="preset",
                                 layout=W.Layout(width="320px"))
        self.preset.observe(self._on_preset, names="value")
        self.prompt = W.Text(placeholder="a watermark", description="prompt", layout=W.Layout(width="320px"))
        self.add_prompt = W.Button(description="add prompt rule", icon="plus")
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
        self.hist = go.FigureWidget(layout=go.Layout(height=180, margin=dict(l=30, r=10, t=25, b=25), barmode="overlay",
                                                     showlegend=False, title=dict(text="", font=dict(size=12))))
        self.hist.add_bar(x=[], y=[], marker_color="#bbbbbb", name="all rows")
        self.hist.add_bar(x=[], y=[], marker_color="#1f77b4", name="kept by the other rules")
        self.box = W.VBox([self.preset, W.HBox([self.prompt, self.add_prompt]), self.dedup_exact, self.dedup_semantic,
                           self.sliders_box, self.counts, self.hist, self.message],
                          layout=W.Layout(width="470px", flex="0 0 470px"))
        self._syncing = False

    # -- sliders ---------------------------------------------------------------------------------
    def rebuild(self) -> None:
        """One slider per threshold rule of the current recipe."""
        ws = self.wb.workspace
        self.sliders = []
        self._slider_rule = []
        for spec in ws.sliders():
            index, column, key = spec["index"], spec["column"], spec["bound"]
            lo, hi, value = spec["low"], spec["high"], spec["value"]
            step = nice_step(hi - lo)
            lo, hi = np.floor(lo / step) * step, np.ceil(hi / step) * step
            value = round(round(value / step) * step, 10)
            s = W.FloatSlider(value=value, min=lo, max=hi, step=step, readout_format=".3f",
                              description=f"{column} {SYMBOLS[key]}",
                              continuous_update=False, style={"description_width": "140px"},
                              layout=W.Layout(width="450px"))
            s.observe(self._on_slider, names="value")
            self.sliders.append(s)
            self._slider_rule.append((index, key))
        self.sliders_box.children = self.sliders
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

    def show_histogram(self, h: dict | None) -> None:
        if not h:
            return
        e = np.asarray(h["edges"])
        mid = (e[:-1] + e[1:]) / 2
        with self.hist.batch_update():
            self.hist.data[0].x, self.hist.data[0].y = mid, h["all"]
            self.hist.data[1].x, self.hist.data[1].y = mid, h["kept_by_other_rules"]
            self.hist.layout.title.text = html.escape(h["column"])

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
