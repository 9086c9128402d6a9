import numpy as np
import polars as pl
import pytest

import workbench
from workbench.demo.build import load_ground_truth
from workbench.errors import WorkbenchError
from workbench.papers.mixing import learn_mix


def test_a_mix_learned_from_labels_weighs_each_score_the_right_way(demo_world):
    c = workbench.open_collection(demo_world)
    frame = c.metadata.select("row", "similarity", "punsafe", "pwatermark").collect()
    truth = load_ground_truth(demo_world)
    good = (~truth["is_unsafe"].cast(pl.Boolean)) & (~truth["has_watermark"].cast(pl.Boolean)) \
        & (truth["caption_kind"] == "matched")
    rng = np.random.default_rng(0)
    pick = rng.choice(len(c), 800, replace=False)
    labels = pl.DataFrame({"row": pick, "label": good.to_numpy()[pick].astype(int)})
    mix = learn_mix(frame, labels, ["similarity", "punsafe", "pwatermark"])
    w = dict(zip(mix.columns, mix.weights))
    assert w["similarity"] > 0 and w["punsafe"] < 0 and w["pwatermark"] < 0
    assert mix.cv["auc_mean"] > 0.8 and mix.cv["labelled"] == 800
    s = mix.score(frame)
    held = np.setdiff1d(np.arange(len(c)), pick)
    g = good.to_numpy()[held]
    assert s[held][g].mean() > s[held][~g].mean()  # the mix ranks unseen good rows higher
    assert set(mix.describe()["weights"]) == {"similarity", "punsafe", "pwatermark"}


def test_bad_input(demo_world):
    c = workbench.open_collection(demo_world)
    frame = c.metadata.select("row", "similarity", "caption").collect()
    one_kind = pl.DataFrame({"row": [0, 1, 2], "label": [1, 1, 1]})
    with pytest.raises(WorkbenchError, match="both kinds"):
        learn_mix(frame, one_kind, ["similarity"])
    labels = pl.DataFrame({"row": [0, 1, 2, 3], "label": [1, 0, 1, 0]})
    with pytest.raises(WorkbenchError, match="not a number"):
        learn_mix(frame, labels, ["caption"])
    with pytest.raises(WorkbenchError, match="no column"):
        learn_mix(frame, labels, ["aesthetic"])
    with pytest.raises(WorkbenchError, match="row and label"):
        learn_mix(frame, labels.rename({"label": "y"}), ["similarity"])
