"""A probe: logistic regression on the embeddings of a handful of labelled rows.

    p = train_probe(c, positive_rows=[12, 40, ...], negative_rows=[3, 7, ...])
    p.cv                       # cross-validated precision / recall at 0.5, and the folds used
    p.save("watermark.safetensors")   # a head file: {head: watermark.safetensors, min: 0.5} in a recipe
    scores = p(c.take_embeddings(rows))

With positives only, negatives are drawn at random from the other rows (most rows of a web crawl
are not what a curator is hunting for; the cross-validated numbers then measure "labelled vs
random", which is the honest reading of a probe trained that way, and the probe says so).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from workbench.errors import WorkbenchError
from workbench.io.files import write_atomic
from workbench.models.heads import Head


@dataclass
class Probe:
    weights: np.ndarray  # (d,) float32
    bias: float
    kind: str = "image"
    positives: list[int] = field(default_factory=list)
    negatives: list[int] = field(default_factory=list)
    random_negatives: bool = False
    cv: dict = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(self.weights.shape[0])

    def __call__(self, x) -> np.ndarray:
        return self.head()(x)

    def head(self) -> Head:
        w, b = self.weights.astype(np.float32), np.float32(self.bias)

        def fn(x):
            z = np.asarray(x, np.float32) @ w + b
            return (0.5 * (1.0 + np.tanh(0.5 * z))).astype(np.float32)

        digest = hashlib.sha256(w.tobytes() + np.float32(b).tobytes()).hexdigest()[:16]
        return Head(f"probe-{digest}", self.dim, fn, kind="probability", info={"digest": digest, "cv": self.cv})

    def save(self, path: str | Path) -> Path:
        """A safetensors head (one Linear + sigmoid) that :func:`workbench.models.heads.load_head` reads back."""
        from safetensors.numpy import save_file

        path = Path(path)
        meta = {"output": "sigmoid", "kind": "probe", "embeddings": self.kind,
                "positives": json.dumps(self.positives), "negatives": json.dumps(self.negatives),
                "random_negatives": json.dumps(self.random_negatives), "cv": json.dumps(self.cv)}
        tensors = {"linear.weight": self.weights.reshape(1, -1).astype(np.float32),
                   "linear.bias": np.array([self.bias], np.float32)}
        return write_atomic(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))


def _rows(v, what: str, n: int) -> np.ndarray:
    a = np.unique(np.asarray(list(v), dtype=np.int64))
    if len(a) and (a.min() < 0 or a.max() >= n):
        raise WorkbenchError(f"{what}: row ids must be in [0, {n}), got {a.min() if a.min() < 0 else a.max()}")
    return a


def train_probe(collection, positive_rows, negative_rows=None, kind: str = "image", n_random: int | None = None,
                C: float = 1.0, seed: int = 0) -> Probe:
    """Fit a logistic regression (scikit-learn) on unit embeddings of the labelled rows; report
    cross-validated precision and recall (stratified folds, at most 5, at least 2 rows per class)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import precision_score, recall_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    n = len(collection)
    pos = _rows(positive_rows, "positive rows", n)
    if len(pos) == 0:
        raise WorkbenchError("a probe needs at least one positive row")
    random_neg = negative_rows is None or len(list(negative_rows)) == 0
    if random_neg:
        rng = np.random.default_rng(seed)
        want = n_random or max(5 * len(pos), 100)
        pool = np.setdiff1d(np.arange(n, dtype=np.int64), pos) if n <= 5_000_000 else None
        if pool is not None:
            neg = np.sort(rng.choice(pool, size=min(want, len(pool)), replace=False))
        else:
            cand = np.unique(rng.integers(0, n, size=want * 2))
            neg = np.setdiff1d(cand, pos)[:want]
    else:
        neg = _rows(negative_rows, "negative rows", n)
        both = np.intersect1d(pos, neg)
        if len(both):
            raise WorkbenchError(f"rows labelled both positive and negative: {both[:10].tolist()}")
    if len(neg) == 0:
        raise WorkbenchError("a probe needs at least one negative row")
    rows = np.concatenate([pos, neg])
    y = np.concatenate([np.ones(len(pos), int), np.zeros(len(neg), int)])
    x = collection.take_embeddings(rows, kind)
    model = LogisticRegression(C=C, max_iter=2000, class_weight="balanced")
    folds = min(5, len(pos), len(neg))
    cv: dict = {"folds": int(folds), "threshold": 0.5, "positives": int(len(pos)), "negatives": int(len(neg)),
                "random_negatives": bool(random_neg)}
    if folds >= 2:
        pred = cross_val_predict(model, x, y, cv=StratifiedKFold(folds, shuffle=True, random_state=seed))
        cv["precision"] = float(precision_score(y, pred, zero_division=0))
        cv["recall"] = float(recall_score(y, pred, zero_division=0))
    else:
        cv["precision"] = cv["recall"] = None
        cv["note"] = "too few labelled rows per class for cross-validation (need 2 of each)"
    model.fit(x, y)
    return Probe(model.coef_[0].astype(np.float32), float(model.intercept_[0]), kind, pos.tolist(), neg.tolist(),
                 random_neg, cv)
