"""Recipe against recipe: the current recipe (A) against a preset (B) picked from "compare with...":
the rows both keep, only A, only B, neither; per cluster; and a sample of each side.

The numbers are :meth:`workbench.curation.workspace.Workspace.compare`'s; this view only shows them.
Labels and captions are web text: escaped before they are rendered.
"""
from __future__ import annotations

import html

import ipywidgets as W

from .gallery import STYLE, item_html

SIDES = (("both", "kept by both"), ("only_a", "kept only by this recipe"), ("only_b", "kept only by the preset"),
         ("neither", "kept by neither"))
SHORT = {"both": "both", "only_a": "only this recipe", "only_b": "only the preset", "neither": "neither"}
SAMPLE_STYLE = STYLE.replace(".wb-gallery", ".wb-compare-sample")
CHOOSE = "(choose a preset)"
TABLE_ROWS = 15


def counts_html(result: dict, other: str) -> str:
    """The four counts of a compare result, with each recipe's kept rows."""
    n = max(int(result["rows"]), 1)
    cells = "".join(f"<td style='padding:2px 10px'><div style='font-size:11px;color:#555'>{html.escape(title)}</div>"
                    f"<b class='wb-compare-{key}'>{int(result[key]):,}</b> ({100 * int(result[key]) / n:.1f}%)</td>"
                    for key, title in SIDES)
    a, b = result.get("a") or {}, result.get("b") or {}
    kept = (f"<div style='font-size:12px'>this recipe keeps {int(a.get('kept', 0)):,}; "
            f"<b>{html.escape(other)}</b> keeps {int(b.get('kept', 0)):,} of {int(result['rows']):,} rows</div>")
    return kept + f"<table class='wb-compare-counts' style='line-height:1.3'><tr>{cells}</tr></table>"


def clusters_html(clusters: list[dict], limit: int = TABLE_ROWS) -> str:
    """The clusters where the two recipes differ most (only A + only B), as an HTML table."""
    ranked = sorted(clusters, key=lambda c: (-(int(c["only_a"]) + int(c["only_b"])), int(c["cluster"])))[:limit]
    body = "".join(
        f"<tr><td>{int(c['cluster'])}</td><td>{html.escape(str(c.get('label') or ''))}</td>"
        + "".join(f"<td style='text-align:right'>{int(c[k]):,}</td>" for k in ("rows", "both", "only_a", "only_b", "neither"))
        + "</tr>" for c in ranked)
    return ("<table class='wb-compare-clusters' style='font-size:11px;line-height:1.25'><tr><th>cluster</th><th>label</th><th>rows</th>"
            "<th>both</th><th>only this</th><th>only preset</th><th>neither</th></tr>" + body + "</table>")


class CompareView:
    """The "compare with..." view of a :class:`widgets.workbench.Workbench`."""

    def __init__(self, workbench, presets: list[str], sample: int = 12):
        self.wb = workbench
        self.sample = sample
        self.result: dict | None = None
        self.other = W.Dropdown(options=[CHOOSE, *presets], value=CHOOSE, description="compare with...",
                                style={"description_width": "110px"}, layout=W.Layout(width="360px"))
        self.other.observe(lambda ch: self.run(), names="value")
        self.counts = W.HTML()
        self.counts.add_class("wb-compare")
        self.clusters = W.HTML(layout=W.Layout(overflow="auto"))
        self.side = W.ToggleButtons(options=[(SHORT[key], key) for key, _ in SIDES], value="only_a",
                                    tooltips=[title for _, title in SIDES], style={"button_width": "120px"})
        self.side.observe(lambda ch: self._show_side(), names="value")
        self.open_btn = W.Button(description="show in gallery", icon="th", layout=W.Layout(width="150px"))
        self.open_btn.on_click(lambda _b: self._to_gallery())
        self.samples = W.HTML()
        self.again = W.Button(description="compare again", icon="refresh", layout=W.Layout(width="150px"))
        self.again.on_click(lambda _b: self.run())
        self.stale = W.HTML()
        self.box = W.VBox([W.HBox([self.other, self.again]), self.stale, self.counts, W.HBox([self.side, self.open_btn], layout=W.Layout(flex_flow="row wrap")),
                           self.samples, self.clusters])

    def run(self) -> None:
        """Compare the current recipe with the picked preset (nothing when none is picked)."""
        name = self.other.value
        if name == CHOOSE:
            return
        out = self.wb.run(lambda: self.wb.workspace.compare(name, sample=self.sample), f"compare with {name}",
                          rebuild=False)
        if out is None:
            return
        self.result = out
        self.stale.value = ""
        self.counts.value = counts_html(out, name)
        self.clusters.value = clusters_html(out.get("clusters") or [])
        self._show_side()

    def mark_stale(self) -> None:
        """The recipe changed: the result shown is an earlier recipe's; say so."""
        if self.result is not None:
            self.stale.value = ("<span style='color:#b00;font-size:12px'>the recipe has changed since this comparison: "
                                "press <i>compare again</i></span>")

    def _show_side(self) -> None:
        if self.result is None:
            return
        rows = list((self.result.get("samples") or {}).get(self.side.value) or [])
        items = self.wb.workspace.gallery(rows, limit=self.sample)
        title = dict(SIDES)[self.side.value]
        if not items:
            self.samples.value = f"<i>no rows {html.escape(title)}</i>"
            return
        cells = "".join(f"<div class='wb-item'>{item_html(it)}</div>" for it in items)
        self.samples.value = (SAMPLE_STYLE + f"<div style='font-size:12px'>a sample of {len(items)} rows "
                              f"{html.escape(title)} (of {int(self.result[self.side.value]):,})</div>"
                              "<div class='wb-compare-sample' style='display:grid;grid-template-columns:repeat(auto-fill, 180px);"
                              f"gap:6px'>{cells}</div>")

    def _to_gallery(self) -> None:
        if self.result is None:
            return
        rows = list((self.result.get("samples") or {}).get(self.side.value) or [])
        self.wb.gallery.show_rows(f"compare: {dict(SIDES)[self.side.value]} ({self.other.value})", rows)
