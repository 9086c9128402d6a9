import polars as pl
import pytest

import workbench
from workbench.audit import EXPLICIT_KEYWORDS, keyword_table, query_unsafe
from workbench.errors import WorkbenchError
from workbench.prompts import text_encoder


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
