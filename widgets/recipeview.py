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
        self.status = W.HTML()
        self.save_btn.on_click(lambda _b: self.wb.run(lambda: self.wb.workspace.save_recipe(self.path.value),
                                                      f"saved {self.path.value}", rebuild=False))
        self.load_btn.on_click(lambda _b: self.wb.run(
            lambda: self.wb.workspace.load_recipe(self.path.value, progress=self.wb.progress_callback()),
            f"loaded {self.path.value}"))
        self.export_btn.on_click(self._export)
        self.box = W.VBox([self.text, W.HBox([self.path, self.save_btn, self.load_btn]),
                           W.HBox([self.out, self.export_btn]), self.status])

    def refresh(self) -> None:
        self.text.value = self.wb.workspace.recipe_text()

    def _export(self, _b) -> None:
        def go():
            m = self.wb.workspace.export(self.out.value)
            self.status.value = (f"wrote {m['rows']:,} rows in {len(m['shards']) if isinstance(m.get('shards'), list) else m.get('shards')} "
                                 f"shards to <code>{html.escape(self.out.value)}</code> (manifest.json lists every file)")
        self.wb.run(go, "export", rebuild=False)
