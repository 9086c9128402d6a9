"""The panel's work views driven from Python: cluster labels that never overlap, who each rule
removes per cluster (bars, a click, the map's colouring), and the current recipe against a preset."""
import re

import numpy as np
import pytest

import workbench
from widgets import Workbench
from widgets.compareview import clusters_html
from widgets.impactview import impact_table_html
from widgets.mapview import SHARE_MODE, label_box, place_labels
from workbench.curation.apply import apply
from workbench.curation.recipe import Recipe, preset


@pytest.fixture
def wb(demo_world):
    return Workbench(demo_world, max_points=1500, projection="pca", impact_delay=0)


def boxes_of(annotations, window, size):
    units = ((window[1] - window[0]) / size[0], (window[3] - window[2]) / size[1])
    return [label_box(a.x, a.y, a.text, units) for a in annotations]


def overlapping(boxes):
    return [(i, j) for i, a in enumerate(boxes) for j, b in enumerate(boxes[:i])
            if a[0] < b[1] and b[0] < a[1] and a[2] < b[3] and b[2] < a[3]]


def test_place_labels_keeps_the_biggest_cluster_and_drops_what_would_overlap():
    cands = [(0.0, 0.0, "small cluster", 10), (0.01, 0.0, "big cluster", 500), (0.8, 0.8, "far away", 5),
             (0.99, 0.5, "cut by the edge of the window", 900), (0.5, 0.5, "", 1000)]
    keep = place_labels(cands, (-0.5, 1.0, -0.5, 1.0), (600, 400))
    assert keep == [1, 2]  # the big one wins the spot; an empty label and one leaving the window are skipped
    # zoomed in (the same pixels over less data), the two near labels no longer meet
    assert sorted(place_labels(cands[:2], (-0.006, 0.016, -0.01, 0.01), (600, 400))) == [0, 1]


def test_map_labels_never_overlap_and_follow_the_zoom(wb):
    m = wb.map
    window, size = m._window(), m._plot_px()
    labels = m.fig.layout.annotations
    assert len(labels) >= 3 and not overlapping(boxes_of(labels, window, size))
    assert len(labels) < len(wb.map.data.labels)  # a 420 px wide map cannot hold every cluster's words
    for a in labels:  # each label sits at the median of its cluster's drawn points
        cid = next(c for c, words in m.data.labels.items() if words == a.text)
        sel = m.data.cluster == cid
        assert (a.x, a.y) == (float(np.median(m.data.x[sel])), float(np.median(m.data.y[sel])))
    x0, x1, y0, y1 = window
    cx, cy, w, h = labels[0].x, labels[0].y, (x1 - x0) / 6, (y1 - y0) / 6
    zoom = (cx - w, cx + w, cy - h, cy + h)  # a third of the map around the biggest cluster's label
    with m.fig.batch_update():
        m.fig.layout.xaxis.range = zoom[:2]
        m.fig.layout.yaxis.range = zoom[2:]
    zoomed = m.fig.layout.annotations
    assert zoomed and not overlapping(boxes_of(zoomed, zoom, size))
    assert all(zoom[0] <= a.x <= zoom[1] and zoom[2] <= a.y <= zoom[3] for a in zoomed)
    inside = [a.text for a in labels if zoom[0] <= a.x <= zoom[1] and zoom[2] <= a.y <= zoom[3]]
    assert len(zoomed) > len(inside)  # labels the whole map had no room for


def test_the_impact_view_shows_cluster_impact_and_follows_the_sliders(demo_world):
    wb = Workbench(demo_world, max_points=1500, projection="pca", impact_delay=30)
    ws = wb.workspace

    def check():
        table = ws.cluster_impact()
        c = ws.counts()
        bars = wb.impact.fig.data[0]
        assert sorted(bars.y) == sorted(table["removed_share"].to_list()[:len(bars.y)])
        assert len(bars.y) == min(len(table), 30) and list(bars.y) == sorted(bars.y, reverse=True)
        line = wb.impact.fig.layout.shapes[0]
        assert line.y0 == line.y1 == pytest.approx(c["removed"] / c["rows"])
        assert sum(r["removed"] for r in wb.impact_records) == c["removed"]
        return list(bars.y)

    first = check()
    wb.filters.sliders[0].value = 0.33
    assert list(wb.impact.fig.data[0].y) == first  # not recomputed on the move itself
    wb.flush()  # what the timer does a moment after the last move
    assert check() != first


def test_a_bar_click_selects_the_cluster_and_shows_what_it_loses(wb):
    ws = wb.workspace
    top = wb.impact_records[0]  # the cluster furthest from the overall share
    wb.impact.pick(wb.impact.bar_position(top["cluster"]))
    members = ws.cluster_members(top["cluster"])
    assert np.array_equal(ws.selection, members) and len(members) == top["rows"]
    drawn = np.nonzero(wb.map.data.cluster == top["cluster"])[0]
    assert list(wb.map.fig.data[0].selectedpoints) == drawn.tolist()
    assert wb.gallery.source.value.startswith(f"removed from cluster {top['cluster']}")
    shown = [p.row for p in wb.gallery.picks]
    assert shown == ws.cluster_removed(top["cluster"], limit=48).tolist() and len(shown) == min(48, top["removed"])
    html = " ".join(box.children[0].value for box in wb.gallery.grid.children)
    assert "kept" not in re.sub(r"<[^>]+>", " ", html).split()  # every item shown was removed
    # the map coloured by the removed share of each point's cluster
    wb.map.color_by.value = SHARE_MODE
    share = {r["cluster"]: r["removed_share"] for r in wb.impact_records}
    colours = np.asarray(wb.map.fig.data[0].marker.color)
    assert np.allclose(colours, [share[int(c)] for c in wb.map.data.cluster], atol=1e-6)
    assert wb.map.fig.data[0].marker.colorscale and wb.map.fig.data[0].marker.showscale


def test_compare_with_a_preset_shows_the_four_sets(wb):
    ws = wb.workspace
    ws.set_bounds(0, min=0.31)
    wb.refresh()
    wb.compare.other.value = "laion2b-en"
    c = workbench.open_collection(ws.collection.path)
    a = apply(c, Recipe.from_dict(ws.recipe.to_dict()))
    b = apply(c, preset("laion2b-en"))
    ka, kb = a.mask[np.argsort(a.rows)], b.mask[np.argsort(b.rows)]
    direct = {"both": ka & kb, "only_a": ka & ~kb, "only_b": ~ka & kb, "neither": ~ka & ~kb}
    text = wb.compare.counts.value
    for key, mask in direct.items():
        shown = int(re.search(rf"wb-compare-{key}'>([\d,]+)<", text).group(1).replace(",", ""))
        assert shown == int(mask.sum()), key
    assert sum(int(m.sum()) for m in direct.values()) == 6000 and direct["only_b"].sum() > 0
    assert f"keeps {a.kept:,}" in text and f"keeps {b.kept:,}" in text
    # the per-cluster table: the clusters where the two differ most
    first = re.search(r"<tr><td>(-?\d+)</td><td>[^<]*</td>(.*?)</tr>", wb.compare.clusters.value)
    cl = wb.compare.result["clusters"]
    worst = max(cl, key=lambda r: (r["only_a"] + r["only_b"], -r["cluster"]))
    assert int(first.group(1)) == worst["cluster"]
    # a sample of each side, in the view and in the gallery
    for side in ("only_b", "both"):
        wb.compare.side.value = side
        rows = [int(r) for r in re.findall(r"row (\d+) &middot;", wb.compare.samples.value)]
        assert rows and set(rows) <= set(np.nonzero(direct[side])[0].tolist())
    # a slider move makes the comparison an earlier recipe's: the view says so until it is run again
    assert wb.compare.stale.value == ""
    wb.filters.sliders[0].value = 0.25
    assert "has changed" in wb.compare.stale.value
    wb.compare.again.click()
    assert wb.compare.stale.value == "" and wb.compare.result["a"]["kept"] == ws.counts()["kept"] != a.kept
    wb.compare.open_btn.click()
    assert wb.gallery.source.value.startswith("compare: kept by both")
    assert {p.row for p in wb.gallery.picks} == set(wb.compare.result["samples"]["both"])


def test_labels_in_the_views_are_escaped():
    rec = {"cluster": 3, "label": "<script>alert(1)</script>", "rows": 10, "removed": 5, "removed_share": 0.5,
           "share_low": 0.2, "share_high": 0.8, "departure": 0.1, "rules": [5]}
    out = impact_table_html([rec], ["<b>rule</b>"])
    assert "<script>" not in out and "&lt;script&gt;" in out and "<b>rule" not in out
    cl = [{"cluster": 1, "label": "<img src=x onerror=alert(1)>", "rows": 4, "both": 1, "only_a": 1, "only_b": 1,
           "neither": 1}]
    assert "<img" not in clusters_html(cl) and "&lt;img" in clusters_html(cl)


def test_the_work_area_puts_filters_map_and_gallery_side_by_side(wb):
    work = wb.work
    assert work.children == (wb.filters.box, wb.map.box, wb.gallery.box)
    assert work.layout.flex_flow == "row wrap"  # one column when they do not fit side by side
    assert wb.filters.box.layout.height == wb.gallery.box.layout.height  # each scrolls inside, beside the map
    assert [t for t in wb.tabs.titles] == ["who is removed", "compare with...", "recipe & export"]


def test_a_rule_on_one_clusters_topic_is_its_tallest_bar(wb):
    """A caption-keyword rule on a word of one cluster's label: that cluster's bar is the tallest,
    red (above the overall share beyond its interval), and the map's share colouring says the same."""
    ws = wb.workspace
    by_size = sorted(wb.impact_records, key=lambda r: -r["rows"])
    target = next(r for r in by_size if r["label"] and r["cluster"] >= 0)
    word = target["label"].split(", ")[0]
    ws.set_recipe(Recipe.from_dict({"name": "topic", "rules": [{"caption_keywords": [word]}]}))
    wb.refresh()
    bars = wb.impact.fig.data[0]
    assert bars.x[0].startswith(f"{target['cluster']}:") and bars.marker.color[0] == "#d62728"
    top = wb.impact_records[0]
    assert top["cluster"] == target["cluster"] and top["departure"] > 0
    assert top["rules"] == [top["removed"]]  # the one rule removes all of it
