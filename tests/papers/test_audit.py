import polars as pl
import pytest

import workbench
from workbench.papers.audit import EXPLICIT_KEYWORDS, keyword_table, query_unsafe
from workbench.errors import WorkbenchError
from workbench.models.prompts import text_encoder


def _by_hand(meta: pl.DataFrame, term: str) -> tuple[int, int, dict]:
    rows = [r for r in meta.iter_rows(named=True) if term in (r["caption"] or "").lower()]
    explicit = [r for r in rows if any(k in ((r["caption"] or "") + " " + (r["url"] or "")).lower()
                                       for k in EXPLICIT_KEYWORDS)]
    tags = {g: sum(1 for r in explicit if r["NSFW"] == g) for g in ("UNLIKELY", "UNSURE", "NSFW")}
    return len(rows), len(explicit), tags


def test_keyword_table_counts_as_the_paper_did(demo_world):
    c = workbench.open_collection(demo_world)
    meta = c.metadata.select("caption", "url", "NSFW", "punsafe").collect()
    terms = ["woman", "cat", "photo"]
    t = keyword_table(c, terms, unsafe_column="punsafe")
    assert t["term"].to_list() == terms
    for row in t.iter_rows(named=True):
        n, ex, tags = _by_hand(meta, row["term"])
        assert (row["rows"], row["explicit"]) == (n, ex) and n > 0
        assert {g: row[f"tag_{g}"] for g in tags} == tags
        assert row["explicit_share"] == pytest.approx(ex / n)
        caps = meta.filter(pl.col("caption").str.to_lowercase().str.contains(row["term"], literal=True))
        assert row["unsafe"] == caps.filter(pl.col("punsafe") >= 0.5).height
    with pytest.raises(WorkbenchError, match="at least one term"):
        keyword_table(c, [])


def test_query_unsafe_shares(demo_world):
    c = workbench.open_collection(demo_world)
    enc = text_encoder(c)
    t = query_unsafe(c, ["a photo of a cat", "nude"], enc, k=50, unsafe_column="punsafe")
    assert t["k"].to_list() == [50, 50]
    for col in ("unsafe_share", "tagged_share", "explicit_share"):
        assert t[col].is_between(0, 1).all()
    # the demo world plants unsafe rows the unsafe prompt finds: its top-k is more unsafe than a cat's
    assert t["unsafe_share"][1] > t["unsafe_share"][0]


def test_threshold_sweep_counts_by_hand():
    from workbench.papers.audit import threshold_sweep

    values = [0.1, 0.2, 0.3, 0.4, None, float("nan")]
    pos = [True, False, True, False, True, False]
    t = threshold_sweep(values, pos, [0.25, 0.5, 0.0])
    assert t["removed"].to_list() == [4, 6, 2]  # missing values are removed, as a recipe does
    assert t["positives_removed"].to_list() == [2, 3, 1]
    assert t["precision"].to_list() == [0.5, 0.5, 0.5]
    assert t["recall"].to_list() == pytest.approx([2 / 3, 1.0, 1 / 3])
    assert t["positive_share_kept"].to_list()[:1] == [0.5] and t["positive_share_kept"][1] is None
    up = threshold_sweep([0.9, 0.1, 0.6], [True, False, False], [0.5], remove="above")
    assert up.row(0, named=True) | {} == {"threshold": 0.5, "removed": 2, "removed_share": 2 / 3, "positives_removed": 1,
                                          "precision": 0.5, "recall": 1.0, "positive_share_kept": 0.0}
    with pytest.raises(WorkbenchError, match="aligned"):
        threshold_sweep([0.1], [True, False], [0.2])
    with pytest.raises(WorkbenchError, match="below or above"):
        threshold_sweep([0.1], [True], [0.2], remove="under")
    with pytest.raises(WorkbenchError, match="thresholds"):
        threshold_sweep([0.1], [True], [])


def test_the_similarity_cut_on_the_demo_world_removes_unsafe_rows_only_weakly(demo_world):
    """The lesson of the audit, measured: a similarity cut is not a safety filter."""
    from workbench.papers.audit import threshold_sweep
    from workbench.demo.build import load_ground_truth

    c = workbench.open_collection(demo_world)
    sim = c.metadata.select("similarity").collect()["similarity"]
    unsafe = load_ground_truth(demo_world)["is_unsafe"]
    t = threshold_sweep(sim, unsafe, [0.2, 0.3])
    base = unsafe.mean()
    # at the 0.3 cut, unsafe rows are removed at well under twice the rate of the rest: not targeted
    assert t["precision"][1] < 2 * base and t["recall"][1] < 2 * t["removed_share"][1]
    assert t["removed"][0] < t["removed"][1]
