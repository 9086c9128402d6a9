"""Probes: logistic regression on a few labelled rows, saved as a head that recipes can use."""
import numpy as np
import pytest

import workbench
from workbench.demo.build import load_ground_truth
from workbench.errors import WorkbenchError
from workbench.models.heads import load_head
from workbench.models.probe import train_probe
from workbench.curation.recipe import Recipe
from workbench.curation.apply import apply


def test_twenty_labels_find_watermarks(demo_world, tmp_path):
    c = workbench.open_collection(demo_world)
    truth = load_ground_truth(demo_world)
    wm = truth["has_watermark"].to_numpy()
    rng = np.random.default_rng(0)
    pos = rng.choice(np.nonzero(wm)[0], 20, replace=False)
    neg = rng.choice(np.nonzero(~wm)[0], 20, replace=False)
    p = train_probe(c, pos, neg)
    assert p.dim == 512 and p.cv["folds"] == 5 and p.cv["precision"] > 0.7 and p.cv["recall"] > 0.7
    scores = p(c.take_embeddings(np.arange(len(c))))
    assert scores.min() >= 0 and scores.max() <= 1
    # the probe ranks watermarked rows first across the collection (AUC against the truth)
    order = np.argsort(-scores)
    ranks = np.empty(len(c))
    ranks[order] = np.arange(len(c))
    auc = 1 - (ranks[wm].mean() - (wm.sum() - 1) / 2) / (~wm).sum()
    assert auc > 0.85, auc
    # saved as a head file, read back by load_head and used in a recipe
    f = p.save(tmp_path / "wm.safetensors")
    h = load_head(f)
    np.testing.assert_allclose(h(c.take_embeddings(np.arange(50))), scores[:50], atol=1e-5)
    sel = apply(c, Recipe.from_dict({"rules": [{"head": str(f), "below": 0.5}]}))
    assert sel.kept == int((scores < 0.5).sum())


def test_positives_only_draw_random_negatives(demo_world):
    c = workbench.open_collection(demo_world)
    p = train_probe(c, [1, 2, 3])
    assert p.random_negatives and len(p.negatives) == 100 and not set(p.negatives) & {1, 2, 3}
    assert p.cv["folds"] == 3


def test_probe_errors(demo_world):
    c = workbench.open_collection(demo_world)
    with pytest.raises(WorkbenchError, match="at least one positive"):
        train_probe(c, [])
    with pytest.raises(WorkbenchError, match="both positive and negative"):
        train_probe(c, [1, 2], [2, 3])
    with pytest.raises(WorkbenchError, match="must be in"):
        train_probe(c, [10**9])
    p = train_probe(c, [1], [2])
    assert p.cv["precision"] is None and "too few" in p.cv["note"]
