import numpy as np
import polars as pl
import pytest

import workbench
from workbench.demo.build import load_ground_truth
from workbench.errors import WorkbenchError
from workbench.demo.textencoder import DemoText
from workbench.papers.proxymix import ProxyTask, learn_mix_proxy, proxy_task

COLUMNS = ["similarity", "punsafe", "noise"]


def _frame(c):
    frame = c.metadata.select("row", "similarity", "punsafe").collect()
    return frame.with_columns(pl.Series("noise", np.random.default_rng(5).standard_normal(len(frame))))


def _heldout(world, n=800):
    truth = load_ground_truth(world)
    one = truth.filter(pl.col("objects").list.len() == 1)
    return one.select("row", pl.col("objects").list.first().alias("class")).sample(n=n, seed=0)


def test_the_flyt_objective_up_weights_the_score_that_finds_matching_pairs(demo_world):
    c = workbench.open_collection(demo_world)
    frame = _frame(c)
    task = proxy_task(c, _heldout(demo_world), DemoText(c.path))
    assert len(task.classes) > 10 and task.zero_shot_accuracy() > 0.9
    mix = learn_mix_proxy(c, frame, COLUMNS, task, steps=40, batch=512, seed=0)
    w = dict(zip(mix.columns, mix.weights))
    # the image-caption cosine finds the matched captions whose contrastive step helps zero-shot;
    # a random column carries no signal
    assert w["similarity"] > 0.5 and abs(w["noise"]) < w["similarity"] / 3
    p = mix.proxy
    assert p["check_loss_mix"] < p["check_loss_uniform"]  # on held-out images it never saw
    assert p["train_loss_last"] < p["train_loss_first"]
    assert p["drive"] + p["check"] == p["heldout"] == len(task.labels)
    assert p["pool_rows"] == len(c) - len(task.labels)  # the held-out rows are not in the pool
    # the mix's top rows are mostly matched captions
    truth = load_ground_truth(demo_world)
    s = mix.score(frame)
    top = np.argsort(-s)[: len(s) // 5]
    assert (truth["caption_kind"].to_numpy()[top] == "matched").mean() > 0.9
    d = mix.describe()
    assert d["method"] == "proxy" and set(d["weights"]) == set(COLUMNS) and "cv" not in d
    assert "proxy task" in mix._repr_html_() and mix.table()["column"].to_list() == COLUMNS


def test_it_is_seeded(demo_world):
    c = workbench.open_collection(demo_world)
    frame = _frame(c)
    task = proxy_task(c, _heldout(demo_world, 200), DemoText(c.path))
    a = learn_mix_proxy(c, frame, COLUMNS, task, pool=1500, steps=5, batch=256, seed=3)
    b = learn_mix_proxy(c, frame, COLUMNS, task, pool=1500, steps=5, batch=256, seed=3)
    assert np.array_equal(a.weights, b.weights) and a.proxy == b.proxy


def test_a_heldout_set_from_outside_the_collection(demo_world):
    """ImageNet-style: embeddings of images that are not rows, with their class names."""
    c = workbench.open_collection(demo_world)
    held = _heldout(demo_world, 300)
    emb = c.take_embeddings(held["row"].to_numpy())
    table = pl.DataFrame({"embedding": emb.tolist(), "class": held["class"]})
    task = proxy_task(c, table, DemoText(c.path))
    assert task.rows is None and task.images.shape == (300, c.dim)
    mix = learn_mix_proxy(c, _frame(c), COLUMNS, task, pool=2000, steps=5, batch=256)
    assert mix.proxy["pool_rows"] == 2000


def test_rows_missing_a_score_are_left_out_and_get_nan(demo_world):
    c = workbench.open_collection(demo_world)
    frame = _frame(c).with_columns(pl.when(pl.col("row") < 100).then(None).otherwise(pl.col("punsafe")).alias("punsafe"))
    task = proxy_task(c, _heldout(demo_world, 200), DemoText(c.path))
    mix = learn_mix_proxy(c, frame, COLUMNS, task, pool=10_000, steps=3, batch=256)
    assert mix.proxy["pool_rows"] == len(c) - 100 - len(set(task.rows.tolist()) - set(range(100)))
    s = mix.score(frame)
    assert np.isnan(s[:100]).all() and np.isfinite(s[100:]).all()


def test_bad_input(demo_world, tmp_path):
    c = workbench.open_collection(demo_world)
    enc = DemoText(c.path)
    frame = _frame(c)
    with pytest.raises(WorkbenchError, match="class and row"):
        proxy_task(c, pl.DataFrame({"row": [1, 2]}), enc)
    with pytest.raises(WorkbenchError, match="not a row of the collection"):
        proxy_task(c, pl.DataFrame({"row": [1, 10**9], "class": ["cat", "dog"]}), enc)
    with pytest.raises(WorkbenchError, match="at least 2 classes"):
        proxy_task(c, pl.DataFrame({"row": [1, 2, 3, 4], "class": ["cat"] * 4}), enc)
    with pytest.raises(WorkbenchError, match="template"):
        proxy_task(c, _heldout(demo_world, 50), enc, template="a photo")
    with pytest.raises(WorkbenchError, match="-d"):
        proxy_task(c, pl.DataFrame({"embedding": [[1.0, 0.0]] * 4, "class": ["a", "b", "a", "b"]}), enc)
    task = proxy_task(c, _heldout(demo_world, 50), enc)
    with pytest.raises(WorkbenchError, match="no column"):
        learn_mix_proxy(c, frame, ["aesthetic"], task)
    with pytest.raises(WorkbenchError, match="steps"):
        learn_mix_proxy(c, frame, COLUMNS, task, steps=0)
    singles = ProxyTask(c.take_embeddings([1, 2, 3, 4]), [0, 1, 2, 3], list("abcd"), enc.encode_text(list("abcd")))
    with pytest.raises(WorkbenchError, match="nothing to check"):
        learn_mix_proxy(c, frame, COLUMNS, singles, steps=1)
    with pytest.raises(WorkbenchError, match="zero, NaN"):
        ProxyTask(np.zeros((4, 3)), [0, 1, 0, 1], ["a", "b"], np.eye(2, 3))
    with pytest.raises(WorkbenchError, match="one label per image"):
        ProxyTask(np.ones((4, 3)), [0, 1, 0], ["a", "b"], np.eye(2, 3))
    # a collection without caption embeddings cannot step the reference
    from conftest import make_embeddings

    bare = workbench.open_collection(make_embeddings(tmp_path / "bare", text=False))
    t = ProxyTask(np.ones((4, bare.dim)), [0, 1, 0, 1], ["a", "b"], np.eye(2, bare.dim))
    with pytest.raises(WorkbenchError, match="text embeddings"):
        learn_mix_proxy(bare, bare.metadata.select("row", "similarity").collect(), ["similarity"], t)
