"""workbench.curation.columns.recipe_frame: metadata plus the score columns a recipe needs."""
import polars as pl

import workbench
from conftest import make_embeddings
from workbench.curation.columns import recipe_frame
from workbench.curation.recipe import Recipe


def test_metadata_plus_the_scores_the_recipe_needs(tmp_path):
    root = make_embeddings(tmp_path / "c", rows=(20, 10), dim=16, metadata="laion5b")
    for p in (root / "metadata").glob("*.parquet"):  # laion5b_table has similarity: drop it
        pl.read_parquet(p).drop("similarity").write_parquet(p)
    c = workbench.open_collection(root)
    r = Recipe.from_dict({"rules": [{"column": "similarity", "min": 0.0}]})
    seen = []
    lf, report = recipe_frame(c, r, progress=lambda d, t: seen.append((d, t)))
    df = lf.collect()
    assert df.height == 30 and "similarity" in df.columns and "similarity" in report
    assert set(c.metadata.collect_schema().names()) <= set(df.columns)
    assert df["row"].to_list() == list(range(30)) and seen[-1][0] == seen[-1][1]
    # columns the caller holds: no scoring, the metadata alone
    lf2, report2 = recipe_frame(c, r, skip={"similarity"})
    assert report2 == {} and "similarity" not in lf2.collect_schema().names()
