"""Score mixing learned from a proxy task: the FLYT objective with a small reference model.

    task = proxy_task(collection, labelled, encoder)          # held-out images, class labels, class prompts
    mix = learn_mix_proxy(collection, frame, ["similarity", "aesthetic", "punsafe"], task)
    mix.weights, mix.proxy                                     # per-column weights; the held-out check
    scores = mix.score(frame)                                  # a new score column (feed it to Soft Cap Sampling)

M-FLYT learns a linear layer over K per-example scores so that training on the data it up-weights
helps a downstream task (REFERENCE.md §3). Here, at a scale that runs on a laptop:

- the mixing layer gives every pool example a score ``m = theta . z`` (``z``: its standardised
  score columns) and, within a batch, the weight ``w = softmax(m)``;
- the *reference model* is the pretrained embedding space plus a linear adapter on the image side,
  ``f(x) = normalise(x + x D)`` with ``D = 0``: it takes one gradient step of size `step_size` on
  the w-weighted CLIP contrastive loss of a pool batch (image-caption pairs at logit scale 100);
- the *downstream loss* is the zero-shot cross-entropy of a held-out labelled set (image
  embeddings, one class each, classified against class prompts) under the stepped adapter; its
  gradient flows back through the step into ``theta`` (a second-order gradient, as in FLYT).

Examples whose contrastive gradient points the way the downstream task wants are up-weighted, and
the weights say which score columns find them. The reference stays at D = 0 (FLYT trains it
along; a fixed one keeps the objective stationary and the result reproducible). The held-out set
is split in two: one half drives the gradient, the other reports the zero-shot loss and accuracy
after a step on uniform weights and after a step on the mix's weights, so the curator sees whether
the mix helps on data it did not see. Only a uniform sample of the pool (`pool` rows, image and
text embeddings) is read, never the whole collection.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from workbench.errors import WorkbenchError
from workbench.io.kernels import unit_rows
from workbench.io.progress import progress_bar
from workbench.papers.mixing import Mix, _matrix, _unique_rows

DEFAULT_TEMPLATE = "a photo of a {}."
LOGIT_SCALE = 100.0


@dataclass
class ProxyTask:
    """A held-out labelled set: unit image embeddings, a class index per row, and the class prompts'
    unit text embeddings (one row per class, in the order of `classes`)."""

    images: np.ndarray  # (n, d) float32
    labels: np.ndarray  # (n,) int64 in [0, len(classes))
    classes: list[str]
    class_embeddings: np.ndarray  # (C, d) float32
    rows: np.ndarray | None = None  # global rows of the collection when the set comes from it (kept out of the pool)

    def __post_init__(self):
        self.images = _unit(np.asarray(self.images, dtype=np.float32), "held-out image embeddings")
        self.class_embeddings = _unit(np.asarray(self.class_embeddings, dtype=np.float32), "class embeddings")
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if self.images.ndim != 2 or len(self.images) != len(self.labels):
            raise WorkbenchError(f"the held-out set needs one label per image ({len(self.images)} images, "
                                 f"{len(self.labels)} labels)")
        if len(self.classes) != len(self.class_embeddings):
            raise WorkbenchError(f"{len(self.classes)} classes but {len(self.class_embeddings)} class embeddings")
        if self.images.shape[1] != self.class_embeddings.shape[1]:
            raise WorkbenchError(f"held-out images are {self.images.shape[1]}-d, class prompts "
                                 f"{self.class_embeddings.shape[1]}-d")
        if len(self.classes) < 2:
            raise WorkbenchError("the proxy task needs at least 2 classes")
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= len(self.classes)):
            raise WorkbenchError("a held-out label is not a class index")
        if len(self.labels) < 4:
            raise WorkbenchError(f"the held-out set has {len(self.labels)} labelled images; the proxy task needs "
                                 "at least 4 (half drive the mix, half check it)")

    def zero_shot_accuracy(self) -> float:
        return float(np.mean(np.argmax(self.images @ self.class_embeddings.T, axis=1) == self.labels))


def _unit(x: np.ndarray, what: str) -> np.ndarray:
    if x.ndim != 2:
        raise WorkbenchError(f"{what} must be a 2-d array, got shape {x.shape}")
    n = np.linalg.norm(x, axis=1, keepdims=True)
    bad = ~np.isfinite(n[:, 0]) | (n[:, 0] < 1e-12)
    if bad.any():
        raise WorkbenchError(f"{what}: row {int(np.nonzero(bad)[0][0])} is zero, NaN or infinite")
    return unit_rows(x, dtype=None)  # every norm is >= 1e-12 here: exactly x / n


def proxy_task(collection, labelled: pl.DataFrame, encoder, template: str = DEFAULT_TEMPLATE,
               where: str | None = None) -> ProxyTask:
    """A held-out set from a table with ``class`` and either ``row`` (rows of `collection`: their image
    embeddings are used, and they are left out of the pool) or ``embedding`` (a list of floats per
    image, e.g. ImageNet validation images embedded with the collection's model). Class prompts are
    `template` filled with each class name, embedded by `encoder` (the collection's text tower).
    `where` (the table's file) is named in errors about the table."""
    if "class" not in labelled.columns or not ({"row", "embedding"} & set(labelled.columns)):
        raise WorkbenchError(f"the held-out set needs columns class and row (or embedding); it has "
                             f"{', '.join(labelled.columns)}", where)
    if "{}" not in template:
        raise WorkbenchError(f"the class prompt template must hold {{}}, got {template!r}")
    lab = labelled.filter(pl.col("class").is_not_null())
    classes = sorted(str(c) for c in lab["class"].unique().to_list())
    index = {c: i for i, c in enumerate(classes)}
    labels = np.array([index[str(c)] for c in lab["class"].to_list()], dtype=np.int64)
    rows = None
    if "row" in lab.columns:
        rows = lab["row"].cast(pl.Int64).to_numpy()
        n = len(collection)
        bad = np.nonzero((rows < 0) | (rows >= n))[0]
        if len(bad):
            raise WorkbenchError(f"held-out row {int(rows[bad[0]])} is not a row of the collection (0..{n - 1})",
                                 where, row=int(bad[0]))
        images = collection.take_embeddings(rows, "image")
    else:
        try:
            images = np.asarray(lab["embedding"].to_list(), dtype=np.float32)
        except (ValueError, TypeError) as exc:
            raise WorkbenchError(f"held-out embeddings must be lists of numbers of one length ({exc})", where) from None
        if images.ndim != 2 or images.shape[1] != collection.dim:
            raise WorkbenchError(f"held-out embeddings are {images.shape[1:] or 'ragged'}, the collection's "
                                 f"are {collection.dim}-d", where)
    ok = np.linalg.norm(images, axis=1) > 1e-6  # invalid collection rows come back zeroed
    if encoder.dim != collection.dim:
        raise WorkbenchError(f"the text encoder gives {encoder.dim}-d prompts, the collection is {collection.dim}-d")
    prompts = encoder.encode_text([template.format(c) for c in classes])
    return ProxyTask(images[ok], labels[ok], classes, prompts, None if rows is None else rows[ok])


def _split(labels: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Half of each class to drive the mix, the rest to check it (a class of one goes to the driving half)."""
    drive, check = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.nonzero(labels == c)[0])
        h = (len(idx) + 1) // 2
        drive.append(idx[:h])
        check.append(idx[h:])
    return np.sort(np.concatenate(drive)), np.sort(np.concatenate(check))


def learn_mix_proxy(collection, frame: pl.DataFrame, columns: list[str], task: ProxyTask, pool: int = 50_000,
                    steps: int = 200, batch: int = 1024, downstream_batch: int = 512, step_size: float = 1.0,
                    lr: float = 0.05, seed: int = 0, progress=False) -> Mix:
    """Learn mixing weights for `columns` (in `frame`: ``row`` + the columns) with the FLYT objective
    on `task` (module docstring). Returns a :class:`~workbench.papers.mixing.Mix` whose ``bias`` is 0 (a
    softmax ignores it) and whose ``proxy`` dict holds the held-out check. `frame` is read in
    row-id order (its own order does not matter; a row id listed twice is refused); rows with a
    missing or non-finite score are left out of the pool. `progress` (:mod:`workbench.io.progress`)
    follows the optimisation steps."""
    import torch
    import torch.nn.functional as F

    if not columns:
        raise WorkbenchError("give at least one column to mix")
    for name, v, low in (("pool", pool, 2), ("steps", steps, 1), ("batch", batch, 2), ("downstream_batch", downstream_batch, 1)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
            raise WorkbenchError(f"{name} must be an integer >= {low}, got {v!r}")
    if not collection.has_text_embeddings:
        raise WorkbenchError("the proxy task steps the reference on image-caption pairs: the collection needs "
                             "text embeddings", collection.path)
    if task.images.shape[1] != collection.dim:
        raise WorkbenchError(f"the held-out set is {task.images.shape[1]}-d, the collection {collection.dim}-d",
                             collection.path)
    _unique_rows(frame["row"], "scores")
    frame = frame.sort("row")  # the pool sample is drawn in row-id order: the same for any input order
    rng = np.random.default_rng(seed)
    x_all = _matrix(frame, columns)
    rows_all = frame["row"].cast(pl.Int64).to_numpy()
    ok = np.all(np.isfinite(x_all), axis=1)
    if task.rows is not None:
        ok &= ~np.isin(rows_all, task.rows)
    cand = np.nonzero(ok)[0]
    if len(cand) < 2:
        raise WorkbenchError("fewer than 2 pool rows have every score (and are not held out)")
    pick = np.sort(rng.choice(cand, size=min(pool, len(cand)), replace=False))
    pool_rows = rows_all[pick]
    img = collection.take_embeddings(pool_rows, "image")
    txt = collection.take_embeddings(pool_rows, "text")
    valid = (np.linalg.norm(img, axis=1) > 1e-6) & (np.linalg.norm(txt, axis=1) > 1e-6)
    pick, img, txt = pick[valid], img[valid], txt[valid]
    if len(pick) < 2:
        raise WorkbenchError("the pool sample has no rows with valid image and text embeddings", collection.path)
    x = x_all[pick]
    means, stds = x.mean(axis=0), x.std(axis=0)
    stds[stds == 0] = 1.0
    z = (x - means) / stds

    drive, check = _split(task.labels, rng)
    if len(check) == 0:
        raise WorkbenchError("the held-out set leaves nothing to check the mix on: give some classes at least "
                             "2 images (half of each class drives the mix, the rest checks it)")
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    X, Y = torch.from_numpy(img), torch.from_numpy(txt)
    Z = torch.from_numpy(z.astype(np.float32))
    H, L = torch.from_numpy(task.images), torch.from_numpy(task.labels)
    P = torch.from_numpy(task.class_embeddings)
    d = X.shape[1]
    bs = min(batch, len(X))
    theta = torch.zeros(len(columns), requires_grad=True)
    opt = torch.optim.Adam([theta], lr=lr)
    drive_t, check_t = torch.from_numpy(drive), torch.from_numpy(check)

    def stepped(b, w, create_graph):
        D = torch.zeros(d, d, requires_grad=True)
        f = F.normalize(X[b] + X[b] @ D, dim=1)
        logits = LOGIT_SCALE * f @ Y[b].T
        target = torch.arange(len(b))
        per = (F.cross_entropy(logits, target, reduction="none") + F.cross_entropy(logits.T, target, reduction="none")) / 2
        (grad,) = torch.autograd.grad((w * per).sum(), D, create_graph=create_graph)
        return D - step_size * grad

    def downstream(D, idx):
        f = F.normalize(H[idx] + H[idx] @ D, dim=1)
        logits = LOGIT_SCALE * f @ P.T
        return F.cross_entropy(logits, L[idx]), (logits.argmax(1) == L[idx]).float().mean()

    losses = []
    bar = progress_bar(progress, steps, "learning the mix (FLYT steps)", unit="step")
    with torch.enable_grad():
        for _ in range(steps):
            b = torch.randperm(len(X), generator=g)[:bs]
            h = drive_t[torch.randperm(len(drive_t), generator=g)[:downstream_batch]]
            w = torch.softmax(Z[b] @ theta, dim=0)
            loss, _ = downstream(stepped(b, w, True), h)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            bar.update(1)
    bar.close()

    # the held-out check: the same pool batches, uniform weights vs the mix's
    weights = theta.detach().clone()
    rounds = max(1, min(16, len(X) // bs))
    order = torch.randperm(len(X), generator=g)
    with torch.enable_grad():
        ref_loss, ref_acc = downstream(torch.zeros(d, d), check_t)
        res = {"reference": [float(ref_loss), float(ref_acc)], "uniform": [0.0, 0.0], "mix": [0.0, 0.0]}
        for r in range(rounds):
            b = order[r * bs:(r + 1) * bs]
            for name, w in (("uniform", torch.full((len(b),), 1.0 / len(b))), ("mix", torch.softmax(Z[b] @ weights, 0))):
                loss, acc = downstream(stepped(b, w, False).detach(), check_t)
                res[name][0] += float(loss) / rounds
                res[name][1] += float(acc) / rounds
    proxy = {
        "objective": "FLYT: held-out zero-shot loss after one weighted contrastive step of a linear adapter",
        "pool_rows": int(len(X)), "heldout": int(len(task.labels)), "drive": int(len(drive)), "check": int(len(check)),
        "classes": len(task.classes), "steps": int(steps), "batch": int(bs), "step_size": float(step_size),
        "lr": float(lr), "seed": int(seed), "train_loss_first": losses[0], "train_loss_last": float(np.mean(losses[-10:])),
        **{f"check_loss_{k}": v[0] for k, v in res.items()}, **{f"check_accuracy_{k}": v[1] for k, v in res.items()},
    }
    return Mix(list(columns), weights.numpy().astype(np.float64), 0.0, means, stds, proxy=proxy)


def mix_collection(collection, columns: list[str], out, labels=None, proxy=None, template: str = DEFAULT_TEMPLATE,
                   pool: int = 50_000, steps: int = 200, scores=None, name: str = "mix", seed: int = 0,
                   encoder=None, progress=False) -> tuple[Mix, dict]:
    """Learn one score of `collection` as a weighted mix of its score `columns` (of the metadata, or of
    the scores parquet `scores` joined on ``row``: each row its own scores, duplicates refused) and
    write ``row, <name>`` to the parquet `out`, whole or not at all: what ``workbench mix`` does.

    From exactly one of `labels` (a parquet: row, label; :func:`workbench.papers.mixing.learn_mix`,
    its errors naming that file) or `proxy` (a held-out parquet: class and row or embedding;
    :func:`proxy_task` with `template` and the text `encoder` (an encoder, a zero-argument callable
    giving one, or None: the collection's own), then :func:`learn_mix_proxy` with `pool`, `steps`).
    Refused (:class:`WorkbenchError`): a missing column, both or neither of labels/proxy. `progress`
    follows the proxy task's steps.
    Returns (the :class:`Mix`, ``{"source", "column", "out", **Mix.describe()}``)."""
    from pathlib import Path

    from workbench.curation.apply import scores_frame
    from workbench.io.files import read_parquet_named, write_parquet_atomic
    from workbench.models.prompts import resolve_encoder
    from workbench.papers.mixing import learn_mix

    lf = scores_frame(collection, scores, columns)
    have = lf.collect_schema().names()
    missing = [x for x in columns if x not in have]
    if missing:
        raise WorkbenchError(f"no column(s) {missing} (columns: {', '.join(sorted(have))})", collection.path)
    if (labels is None) == (proxy is None):
        raise WorkbenchError("give --labels (row, label) or --proxy (a held-out set: row or embedding, class), one of them")
    frame = lf.select(["row"] + list(columns)).collect()
    if labels is not None:
        try:
            mix = learn_mix(frame, read_parquet_named(labels, "labels"), columns, seed=seed)
        except WorkbenchError as exc:  # errors about the labels table name its file
            if exc.path is not None:
                raise
            raise WorkbenchError(exc.reason, labels, exc.row) from None
    else:
        held = read_parquet_named(proxy, "held-out set")
        task = proxy_task(collection, held, resolve_encoder(encoder, collection), template=template, where=proxy)
        mix = learn_mix_proxy(collection, frame, columns, task, pool=pool, steps=steps, seed=seed, progress=progress)
    write_parquet_atomic(pl.DataFrame({"row": frame["row"], name: mix.score(frame)}), out)
    return mix, {"source": str(collection.path), "column": name, "out": str(Path(out)), **mix.describe()}
