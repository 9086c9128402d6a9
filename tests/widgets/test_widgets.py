"""The notebook UI driven from Python: set a slider, assert the counts; lasso, assert the gallery."""
import re

import numpy as np
import polars as pl
import pytest

import workbench
from conftest import make_embeddings
from widgets import Workbench
from widgets.gallery import item_html
from workbench.demo.build import load_ground_truth
from workbench.curation.recipe import Recipe
from workbench.curation.apply import apply


def total(wb) -> str:
    return re.search(r"kept ([\d,]+)</b> of ([\d,]+)", wb.filters.counts.value).group(0)


def kept_shown(wb) -> int:
    return int(re.search(r"kept ([\d,]+)</b>", wb.filters.counts.value).group(1).replace(",", ""))


@pytest.fixture
def wb(demo_world):
    return Workbench(demo_world, max_points=1000, projection="pca")


def test_panel_sliders_map_and_counts(wb):
    assert "wb-panel" in wb.panel._dom_classes and "wb-map" in wb.map.fig._dom_classes
    assert [s.description for s in wb.filters.sliders] == ["similarity >=", "punsafe <", "pwatermark <"]
    assert "wb-filters" in wb.filters.sliders_box._dom_classes and "wb-counts" in wb.filters.counts._dom_classes
    assert len(wb.map.fig.data[0].x) == 1000 and "1,000</b> of 6,000 rows drawn" in wb.map.info.value
    assert kept_shown(wb) == wb.workspace.counts()["kept"]
    # the first slider moves the counts, the histogram and the map colours
    before = kept_shown(wb)
    wb.filters.sliders[0].value = 0.33
    assert kept_shown(wb) < before
    sel = apply(wb.workspace.collection, Recipe.from_dict(wb.workspace.recipe.to_dict()))
    assert kept_shown(wb) == sel.kept
    assert wb.filters.hist.layout.title.text.startswith("similarity") and sum(wb.filters.hist.data[0].y) > 0
    # the histogram spans the column's whole range; the threshold is a line; the slider says what it keeps
    lo, hi = wb.workspace.value_range("similarity")
    assert tuple(wb.filters.hist.layout.xaxis.range) == (lo, hi) and lo < 0.2 and hi > 0.4
    assert [(sh.x0, sh.x1) for sh in wb.filters.hist.layout.shapes] == [(0.33, 0.33)]
    c = wb.workspace.counts()
    keeps = 100 * (1 - c["rules"][0]["removed_alone"] / c["rows"])
    assert f"0.330 &middot; keeps <b>{keeps:.1f}%</b>" in wb.filters.shares[0].value
    wb.flush()  # the map recolours a moment after the counts
    colours = np.asarray(wb.map.fig.data[0].marker.color)
    assert np.array_equal(colours, wb.workspace.kept_mask()[wb.map.data.rows].astype(np.uint8))
    assert "min: 0.33" in wb.recipe_view.text.value


def test_lasso_fills_the_gallery_and_becomes_a_rule(wb):
    assert not wb.gallery.grid.children
    wb.map.select_points(range(0, 1000, 10))  # 100 drawn points
    assert len(wb.workspace.selection) == 100 and len(wb.gallery.grid.children) == 48
    assert all("wb-item" in box._dom_classes for box in wb.gallery.grid.children)
    assert "48 shown of 100 selected" in wb.gallery.note.value
    before = wb.workspace.counts()["removed"]
    wb.gallery.drop_btn.click()
    assert wb.workspace.recipe.rules[-1].kind == "drop_rows" and wb.workspace.counts()["removed"] > before
    assert "drop 100 selected rows" in wb.filters.counts.value
    wb.gallery.source.value = "removed by: drop 100 selected rows"
    assert {p.row for p in wb.gallery.picks} <= set(wb.workspace.selection.tolist())


def test_a_slider_move_relabels_the_gallery_and_keeps_the_picks(wb):
    """The gallery's kept / removed-by labels must follow the thresholds (a stale label misleads)."""
    wb.map.select_points(range(0, 1000, 10))
    wb.gallery.picks[0].value = True
    picked = wb.gallery.picked()
    top = wb.filters.sliders[0].max  # similarity >= its greatest value: (nearly) every row removed by it
    wb.filters.sliders[0].value = top
    wb.flush()
    html = " ".join(box.children[0].value for box in wb.gallery.grid.children)
    name = wb.workspace.recipe.rules[0].name.replace(">", "&gt;")
    assert f"removed: {name}" in html and html.count(f"removed: {name}") >= 47, name
    assert wb.gallery.picked() == picked


def test_controls_call_the_workspace(wb, tmp_path):
    wb.filters.preset.value = "laion2b-en"
    assert [r.kind for r in wb.workspace.recipe.rules] == ["caption_length", "dedup", "column"]
    assert len(wb.filters.sliders) == 1 and wb.filters.dedup_exact.value
    wb.filters.dedup_exact.value = False
    assert [r.kind for r in wb.workspace.recipe.rules] == ["caption_length", "column"]
    wb.filters.prompt.value = "a watermark"
    wb.filters.add_prompt.click()
    assert wb.workspace.recipe.rules[-1].kind == "prompt" and len(wb.filters.sliders) == 2
    assert wb.filters.sliders[1].description.startswith("prompt_")
    before = kept_shown(wb)
    s = wb.filters.sliders[1]
    s.value = s.min + (s.max - s.min) / 2  # a prompt cut through the middle of its range
    assert 0 < kept_shown(wb) < before
    wb.recipe_view.path.value = str(tmp_path / "r.yaml")
    wb.recipe_view.save_btn.click()
    assert (tmp_path / "r.yaml").exists() and "error" not in wb.messages.value
    wb.recipe_view.out.value = str(tmp_path / "out")
    wb.recipe_view.export_btn.click()
    assert len(workbench.open_collection(tmp_path / "out")) == kept_shown(wb)
    assert "wrote" in wb.recipe_view.status.value
    assert wb.recipe_view.formats.options == ("laion", "img2dataset")  # the demo world has urls, no images
    # errors are shown in the panel, not raised
    s.value = s.min + (s.max - s.min) / 3
    wb.recipe_view.export_btn.click()  # the folder holds another selection's export now
    assert "export" in wb.messages.value and "#b00" in wb.messages.value and "finished export" in wb.messages.value
    s.value = s.min
    wb.recipe_view.out.value = str(tmp_path / "none")
    wb.recipe_view.export_btn.click()
    assert kept_shown(wb) == 0 and "nothing to export" in wb.messages.value


def test_labels_and_probe_from_the_gallery(demo_world):
    wb = Workbench(demo_world, max_points=6000, projection="pca")
    truth = load_ground_truth(demo_world)
    wm = np.nonzero(truth["has_watermark"].to_numpy())[0]
    pos = {int(r): i for i, r in enumerate(wb.map.data.rows)}
    wb.map.select_points([pos[r] for r in wm[:20]])
    for p in wb.gallery.picks:
        p.value = True
    wb.gallery.label_name.value = "watermark"
    wb.gallery.label_btn.click()
    assert sum(1 for v in wb.workspace.labels.values() if v == "watermark") == 20
    wb.gallery.probe_btn.click()
    assert wb.workspace.recipe.rules[-1].kind == "head" and "watermark&#x27; trained (cross-validated" in wb.messages.value
    assert wb.filters.sliders[-1].description.startswith("head_watermark")


def hostile(tmp_path):
    root = make_embeddings(tmp_path / "c", rows=(6,), dim=16)
    p = root / "metadata" / "metadata_0.parquet"
    df = pl.read_parquet(p).with_columns(pl.Series("TEXT", [
        "<script>alert(1)</script>", "<img src=x onerror=alert(2)>", "a & b \" ' <b>bold</b>",
        "plain", None, "x" * 300]))
    df.write_parquet(p)
    return root


def test_captions_render_escaped(tmp_path):
    wb = Workbench(hostile(tmp_path), max_points=100, projection="pca")
    wb.map.select_points(range(6))
    html = "".join(box.children[0].value for box in wb.gallery.grid.children)
    assert "<script>" not in html and "<img src=x" not in html and "<b>bold" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "&lt;img src=x onerror=alert(2)&gt;" in html
    assert "wb-noimg" in html  # no images: captions and scores shown
    for box in wb.gallery.grid.children:  # the only tags are the ones the gallery writes
        tags = set(re.findall(r"<\s*([a-zA-Z]+)", box.children[0].value))
        assert tags <= {"div", "span", "br", "b", "img", "input", "label"}, tags
        assert "onerror" not in re.sub(r"&lt;.*?&gt;", "", box.children[0].value)


def test_unsafe_items_are_blurred_until_clicked():
    safe = {"row": 1, "caption": "a cat", "thumbnail": b"\xff\xd8jpeg", "unsafe": False, "kept": True, "scores": {}}
    risky = {**safe, "row": 2, "unsafe": True}
    assert "wb-blur" not in item_html(safe) and "data:image/jpeg;base64," in item_html(safe)
    h = item_html(risky)
    assert "wb-blur" in h and "type='checkbox' class='wb-reveal'" in h and "<label class='wb-blurlabel'" in h


def test_umap_replaces_the_quick_view(demo_world):
    wb = Workbench(demo_world, max_points=500, projection="auto", background=False,
                   projection_params={"sample": 1500, "n_epochs": 30})
    assert wb.map.data.method == "umap" and len(wb.map.fig.data[0].x) == 500
    again = Workbench(demo_world, max_points=500, projection_params={"sample": 1500, "n_epochs": 30})
    assert again.map.data.method == "umap" and again.umap_thread is None  # cached: drawn at once
    # not cached: a quick PCA view at once, UMAP in another process, then the map is redrawn
    bg = Workbench(demo_world, max_points=500, projection_params={"sample": 1200, "n_epochs": 30})
    assert bg.map.data.method == "pca" and "PCA" in bg.map.info.value and bg.umap_thread is not None
    assert bg.wait_for_map(300) and bg.map.data.method == "umap" and "UMAP" in bg.map.info.value
    assert bg.map.status.value == ""
    assert bg.map.fig.layout.images and bg.map.fig.layout.images[0].source.startswith("data:image/png")


def test_every_row_is_on_the_map_as_a_density_image_that_follows_sliders_and_zoom(demo_world):
    """The drawn points are a sample; the image under them counts all 6,000 rows (kept / removed),
    repaints after a slider move, and re-rasters the window on a zoom."""
    wb = Workbench(demo_world, max_points=300, projection="umap", background=False, recolor_delay=0,
                   projection_params={"sample": 1500, "n_epochs": 30})
    ws = wb.workspace
    r = ws.density(**wb.projection_params)
    assert r.rows == 6000 and r.kept.sum() == ws.counts()["kept"]  # every row, not the 300 drawn
    first = wb.map.fig.layout.images[0].source
    wb.filters.sliders[0].value = 0.33  # counts first; then points, gallery and image repaint
    assert wb.map.fig.layout.images[0].source != first
    assert ws.density(**wb.projection_params).kept.sum() == ws.counts()["kept"]
    x0, x1, y0, y1 = wb.map.density_window
    zoom = (x0, (x0 + x1) / 2, y0, (y0 + y1) / 2)
    with wb.map.fig.batch_update():
        wb.map.fig.layout.xaxis.range = zoom[:2]
        wb.map.fig.layout.yaxis.range = zoom[2:]
    assert wb.map.density_window == zoom
    img = wb.map.fig.layout.images[0]
    assert (img.x, img.y, img.sizex, img.sizey) == (zoom[0], zoom[3], zoom[1] - zoom[0], zoom[3] - zoom[2])
    assert 0 < ws.density(zoom, **wb.projection_params).rows < 6000


def test_mix_view_shows_the_weights_and_the_check(demo_world):
    from widgets.mixview import check_html, mix_view, weights_figure
    from workbench.papers.mixing import learn_mix

    c = workbench.open_collection(demo_world)
    frame = c.metadata.select("row", "similarity", "punsafe").collect()
    truth = load_ground_truth(demo_world)
    labels = pl.DataFrame({"row": truth["row"][:400], "label": (~truth["is_unsafe"].cast(pl.Boolean))[:400].cast(pl.Int8)})
    mix = learn_mix(frame, labels, ["similarity", "punsafe"])
    fig = weights_figure(mix)
    assert list(fig.data[0].y) == ["similarity", "punsafe"] and fig.data[0].x[1] < 0
    assert "cross-validated AUC" in check_html(mix)
    box = mix_view(mix)
    assert "weight / sd" in box.children[0].value and "punsafe" in box.children[0].value
    mix.proxy = {"heldout": 10, "classes": 2, "pool_rows": 100, "steps": 3, "check": 5, "check_loss_uniform": 0.5,
                 "check_loss_mix": 0.25, "check_loss_reference": 0.1, "check_accuracy_uniform": 0.8,
                 "check_accuracy_mix": 0.9}
    assert "0.2500" in check_html(mix) and "FLYT" in check_html(mix)


def test_save_png_writes_a_static_figure(tmp_path):
    import plotly.graph_objects as go

    from widgets.figures import save_png

    fig = go.Figure(go.Bar(x=["a", "b"], y=[1, 2]))
    assert save_png(fig, "f", None) is fig and not any(tmp_path.iterdir())
    assert save_png(fig, "bars", tmp_path / "figs") is fig
    png = (tmp_path / "figs" / "bars.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and [p.name for p in (tmp_path / "figs").iterdir()] == ["bars.png"]
    with pytest.raises(ValueError, match="letters"):
        save_png(fig, "../x", tmp_path)


def test_a_background_umap_can_be_cancelled(demo_world):
    import time

    bg = Workbench(demo_world, max_points=500, projection_params={"sample": 3000, "n_epochs": 2000})
    assert bg.map.data.method == "pca" and bg.umap_thread is not None
    t0 = time.perf_counter()
    while (bg.umap_job is None or bg.umap_job.stage is None) and time.perf_counter() - t0 < 120:
        time.sleep(0.2)
    assert bg.map.cancel_btn.layout.visibility == "visible"
    assert bg.cancel_map() and bg.wait_for_map(30)
    assert bg.umap_job.state == "cancelled" and not bg.umap_job.process.is_alive()
    assert bg.map.data.method == "pca" and "cancelled" in bg.map.status.value
    assert bg.map.cancel_btn.layout.visibility == "hidden" and not bg.cancel_map()
