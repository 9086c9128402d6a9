"""The gallery: thumbnails (or captions and scores alone) of the lasso selection, of the rows a rule
removes, or of the top of a prompt; unsafe rows blurred until clicked; items picked for labelling.

Captions are web text: every caption, URL and label is HTML-escaped before it is rendered, so a
caption holding ``<script>`` or ``<img onerror=...>`` shows as text.
"""
from __future__ import annotations

import base64
import html
import itertools

import ipywidgets as W

STYLE = """<style>
.wb-gallery .wb-item { width: 150px; }
.wb-gallery .wb-thumb { width: 144px; height: 144px; display: flex; align-items: center; justify-content: center;
  background: #f3f3f3; overflow: hidden; cursor: default; }
.wb-gallery .wb-thumb img { max-width: 144px; max-height: 144px; }
.wb-gallery input.wb-reveal { display: none; }
.wb-gallery .wb-blur img, .wb-gallery .wb-blur .wb-noimg { filter: blur(18px); }
.wb-gallery label.wb-blurlabel { cursor: pointer; display: block; }
.wb-gallery input.wb-reveal:checked + label .wb-blur img,
.wb-gallery input.wb-reveal:checked + label .wb-blur .wb-noimg { filter: none; }
.wb-gallery .wb-caption { font-size: 11px; line-height: 1.25; max-height: 4.2em; overflow: hidden; word-break: break-word; }
.wb-gallery .wb-meta { font-size: 10px; color: #555; line-height: 1.3; }
.wb-gallery .wb-noimg { line-height: 1.3; }
.wb-gallery .wb-removed { color: #b00; }
</style>"""

_ids = itertools.count()


def item_html(item: dict, show_scores: tuple = ()) -> str:
    """One gallery item as HTML. Unsafe items are blurred; a click (a CSS-only checkbox) reveals them."""
    caption = html.escape(str(item.get("caption") or ""))  # web text
    if item.get("thumbnail"):
        img = f"<img alt='row {item['row']}' src='data:image/jpeg;base64,{base64.b64encode(item['thumbnail']).decode()}'>"
    else:
        img = f"<div class='wb-noimg' style='font-size:11px;padding:6px'>{caption or '(no caption)'}</div>"
    thumb = f"<div class='wb-thumb{' wb-blur' if item.get('unsafe') else ''}'>{img}</div>"
    if item.get("unsafe"):
        uid = f"wb-r{next(_ids)}"
        thumb = (f"<input type='checkbox' class='wb-reveal' id='{uid}'>"
                 f"<label class='wb-blurlabel' for='{uid}' title='above the unsafe threshold: click to reveal'>{thumb}</label>")
    scores = " ".join(f"{html.escape(k)}={v:.3f}" for k, v in item.get("scores", {}).items()
                      if k in show_scores and isinstance(v, (int, float)))
    state = ("kept" if item.get("kept") else f"<span class='wb-removed'>removed: {html.escape(str(item.get('reason')))}</span>")
    label = f" &middot; label <b>{html.escape(item['label'])}</b>" if item.get("label") else ""
    return (f"{thumb}<div class='wb-caption' title='{caption}'>{caption}</div>"
            f"<div class='wb-meta'>row {item['row']} &middot; {state}{label}<br>{scores}</div>")


class Gallery:
    def __init__(self, workbench, limit: int = 48):
        self.wb = workbench
        self.limit = limit
        self.rows: list[int] = []
        self.source = W.Dropdown(options=["lasso selection"], description="show", layout=W.Layout(width="100%", max_width="400px"),
                                 style={"description_width": "40px"})
        self.source.observe(lambda ch: self.refresh(), names="value")
        self.remote = W.Checkbox(description="fetch remote images (contacts the URLs' hosts)", value=False, indent=False)
        self.remote.observe(lambda ch: self.refresh(), names="value")
        self.label_name = W.Text(value="watermark", description="label", layout=W.Layout(width="240px"))
        self.label_btn = W.Button(description="label picked", icon="tag", tooltip="give the picked items the label")
        self.unlabel_btn = W.Button(description="unlabel picked", tooltip="clear the labels of the picked items")
        self.probe_btn = W.Button(description="train probe", icon="graduation-cap",
                                  tooltip="train a probe on the label; it becomes a score column and a rule")
        self.drop_btn = W.Button(description="drop selection", icon="minus-circle",
                                 tooltip="a rule that drops the selected rows")
        self.keep_btn = W.Button(description="keep only selection", icon="check-circle",
                                 tooltip="a rule that keeps only the selected rows")
        self.label_btn.on_click(lambda _b: self._label(self.label_name.value.strip() or None))
        self.unlabel_btn.on_click(lambda _b: self._label(None))
        self.probe_btn.on_click(lambda _b: self.wb.train_probe(self.label_name.value.strip()))
        self.drop_btn.on_click(lambda _b: self.wb.run(self.wb.workspace.drop_selection, "drop selection"))
        self.keep_btn.on_click(lambda _b: self.wb.run(self.wb.workspace.keep_selection, "keep only selection"))
        self.style = W.HTML(STYLE)
        self.grid = W.GridBox(layout=W.Layout(grid_template_columns="repeat(auto-fill, 150px)", grid_gap="6px"))
        self.grid.add_class("wb-gallery")
        self.note = W.HTML()
        self.picks: list[W.ToggleButton] = []
        self.grid.layout.overflow = "hidden auto"
        self.grid.layout.flex = "1 1 auto"
        self.grid.layout.min_height = "0"
        self.grid.layout.align_content = "flex-start"
        self.grid.layout.grid_auto_rows = "max-content"  # an item's height, however little room the column has
        self.extra: dict[str, list[int]] = {}  # sources named by other views (a cluster's removed rows, a compare side)
        for b in (self.label_btn, self.unlabel_btn, self.probe_btn, self.drop_btn, self.keep_btn):
            b.layout.width = "auto"
        self.label_name.layout.width = "190px"
        self.label_name.style.description_width = "40px"
        self.note.layout.flex = "0 0 auto"
        self.box = W.VBox([W.HBox([self.source, self.remote], layout=W.Layout(flex_flow="row wrap", flex="0 0 auto")),
                           W.HBox([self.drop_btn, self.keep_btn, self.label_name, self.label_btn, self.unlabel_btn,
                                   self.probe_btn], layout=W.Layout(flex_flow="row wrap", flex="0 0 auto")),
                           self.note, self.style, self.grid],
                          layout=W.Layout(min_width="0", overflow="hidden"))
        self.box.add_class("wb-gallery-column")

    def update_sources(self) -> None:
        ws = self.wb.workspace
        opts = ["lasso selection"] + [f"removed by: {r.name}" for r in ws.recipe.rules] + \
               [f"top of: {ws.recipe.rules[i].name}" for i, _ in ws.rankable_rules()] + list(self.extra)
        value = self.source.value if self.source.value in opts else "lasso selection"
        self.source.options = opts
        self.source.value = value

    def show_rows(self, name: str, rows) -> None:
        """Show `rows` (row ids, from a workspace call) as the source `name`, and select it."""
        self.extra = {name: [int(r) for r in rows][: self.limit]}  # one named source at a time
        self.update_sources()
        if self.source.value == name:
            self.refresh()
        else:
            self.source.value = name  # refreshes

    def _rows(self) -> list[int]:
        ws = self.wb.workspace
        src = self.source.value
        if src == "lasso selection":
            return ws.selection[: self.limit].tolist()
        if src in self.extra:
            return self.extra[src]
        names = [r.name for r in ws.recipe.rules]
        if src.startswith("removed by: "):
            return ws.removed_by(names.index(src[len("removed by: "):]), self.limit).tolist()
        ranked = dict(ws.rankable_rules())
        return ws.top_by(ranked[names.index(src[len("top of: "):])], self.limit).tolist()

    def refresh(self) -> None:
        ws = self.wb.workspace
        was_picked = set(self.picked())  # picks survive a refresh (a slider move relabels the items)
        self.rows = self._rows()
        items = ws.gallery(self.rows, limit=self.limit, allow_remote=self.remote.value)
        show = tuple(c for _, c in ws.threshold_rules())
        children, self.picks = [], []
        for it in items:
            pick = W.ToggleButton(description="pick", value=it["row"] in was_picked, layout=W.Layout(width="80px"))
            pick.row = it["row"]
            self.picks.append(pick)
            h = W.HTML(item_html(it, show))
            box = W.VBox([h, pick], layout=W.Layout(overflow="visible"))
            box.add_class("wb-item")
            children.append(box)
        self.grid.children = children
        n_sel = len(ws.selection)
        self.note.value = (f"{len(items)} shown" + (f" of {n_sel:,} selected" if self.source.value == "lasso selection" else "")
                           + ("" if items or self.source.value != "lasso selection" else " &middot; draw a lasso on the map"))

    def picked(self) -> list[int]:
        return [p.row for p in self.picks if p.value]

    def _label(self, name) -> None:
        rows = self.picked()
        if not rows:
            self.wb.say("pick gallery items first")
            return
        self.wb.workspace.label(rows, name)
        self.wb.say(f"{len(rows)} rows {'labelled ' + repr(name) if name else 'unlabelled'}; "
                    f"{len(self.wb.workspace.labels)} labelled in all")
        self.refresh()
