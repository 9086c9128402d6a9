"""The recipe as text, with save and load, and the export button."""
from __future__ import annotations

import html

import ipywidgets as W


class RecipeView:
    def __init__(self, workbench):
        self.wb = workbench
        self.text = W.Textarea(layout=W.Layout(width="100%", height="180px"), disabled=True)
        self.path = W.Text(value="recipe.yaml", description="file", layout=W.Layout(width="360px"))
        self.save_btn = W.Button(description="save recipe", icon="save")
        self.load_btn = W.Button(description="load recipe", icon="folder-open")
        self.out = W.Text(value="subset", description="export to", layout=W.Layout(width="360px"))
        self.export_btn = W.Button(description="export kept rows", icon="download", button_style="primary")
        formats = self.wb.workspace.export_formats()
        self.formats = W.SelectMultiple(options=formats, value=("laion",), rows=len(formats), description="formats",
                                        layout=W.Layout(width="260px"))
        self.status = W.HTML()
        self.save_btn.on_click(lambda _b: self.wb.run(lambda: self.wb.workspace.save_recipe(self.path.value),
                                                      f"saved {self.path.value}", rebuild=False))
        self.load_btn.on_click(lambda _b: self.wb.run(
            lambda: self.wb.workspace.load_recipe(self.path.value, progress=self.wb.progress_callback()),
            f"loaded {self.path.value}"))
        self.export_btn.on_click(self._export)
        self.box = W.VBox([self.text, W.HBox([self.path, self.save_btn, self.load_btn]),
                           W.HBox([self.out, self.formats, self.export_btn]), self.status])

    def refresh(self) -> None:
        self.text.value = self.wb.workspace.recipe_text()

    def _export(self, _b) -> None:
        def go():
            m = self.wb.workspace.export(self.out.value, formats=tuple(self.formats.value) or ("laion",),
                                         progress=self.wb.progress_callback())
            outs = m.get("outputs", {})
            parts = ", ".join(f"{fmt} ({o['parts']} file{'s' if o['parts'] != 1 else ''})" for fmt, o in outs.items())
            extra = ""
            if outs.get("webdataset", {}).get("no_image"):
                extra = f"; {outs['webdataset']['no_image']:,} kept rows have no image (status no_image)"
            self.status.value = (f"wrote {m['parameters']['selected_rows']:,} rows to <code>{html.escape(self.out.value)}</code>: "
                                 f"{html.escape(parts)}{extra} (manifest.json lists every file)")
        self.wb.run(go, "export", rebuild=False)
