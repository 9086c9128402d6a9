"""Scorer pieces: the fp16 dot kernel, chunk views, language detection."""
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import workbench
from conftest import unit_rows
from workbench.scoring.scorers import ChunkView, LanguageScorer, dots
from workbench.curation.recipe import Recipe
from workbench.curation.apply import apply
from workbench.scoring.compute import compute


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_dots_match_float64(dtype):
    x = (unit_rows(1000, 64, 0) * 3).astype(dtype)
    q = unit_rows(5, 64, 1)
    ref = x.astype(np.float64) @ q.astype(np.float64).T
    np.testing.assert_allclose(dots(x, q), ref, atol=3e-3 if dtype == np.float16 else 1e-5)


def test_chunk_view_unit_rows():
    x = (unit_rows(10, 8, 0) * 2).astype(np.float16)
    v = ChunkView(100, 0, 0, x, np.linalg.norm(x.astype(np.float64), axis=1).astype(np.float32), np.ones(10, bool))
    assert len(v) == 10 and np.allclose(np.linalg.norm(v.unit, axis=1), 1, atol=1e-6)


def test_language_of_captions(tmp_path):
    root = tmp_path / "meta"
    root.mkdir()
    caps = ["a photo of a cat sitting on the sofa", "ein Foto von einer Katze auf dem Sofa",
            "une photo d'un chat sur le canapé", None, "   ", "the quick brown fox jumps over the lazy dog"]
    pq.write_table(pa.table({"URL": [f"u{i}" for i in range(6)], "TEXT": caps}), root / "part-0.parquet")
    c = workbench.open_collection(root)
    df = compute(c, [LanguageScorer()], cache=False).collect()
    assert df["language"].to_list() == ["en", "de", "fr", None, None, "en"]
    conf = df["language_confidence"].to_list()
    assert conf[0] > 0.5 and conf[3] == 0.0
    sel = apply(c, Recipe.from_dict({"rules": [{"language": "en", "min_confidence": 0.3}]}))
    assert sel.kept_rows().tolist() == [0, 5]


def test_resident_scores_on_a_tensor():
    import torch

    from workbench.scoring.scorers import resident_scores

    x = unit_rows(500, 32, 0)
    q = unit_rows(2, 32, 1)
    s = resident_scores(torch.from_numpy(x), q)
    np.testing.assert_allclose(s.numpy(), x @ q.T, atol=1e-5)
    norms = torch.full((500,), 2.0)
    np.testing.assert_allclose(resident_scores(torch.from_numpy(2 * x), q, norms).numpy(), x @ q.T, atol=1e-5)
