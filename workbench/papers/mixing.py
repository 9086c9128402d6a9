"""Score mixing (M-FLYT-style): learn one score as a linear combination of K score columns.

    mix = learn_mix(frame, labels, ["similarity", "aesthetic", "punsafe"])
    mix.weights            # per column, in standard deviations of that column
    scores = mix.score(frame)
    mix.table()            # the weights as a table (a notebook shows the mix as one)

A mix can also be learned without labels, from a proxy task on embeddings: :mod:`workbench.papers.proxymix`.

M-FLYT trains its mixing layer with the FLYT objective (a downstream zero-shot loss through a
reference CLIP's update), which needs training runs. Here the layer is learned from the
curator's labels: a logistic regression on the standardised columns (rows missing a value are
left out of training and get NaN), with stratified cross-validated AUC so the curator sees
whether the mix generalises. The weights are shown per standard deviation, so their sizes compare.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from workbench.errors import WorkbenchError


@dataclass
class Mix:
    columns: list[str]
    weights: np.ndarray  # per standardised column
    bias: float
    means: np.ndarray
    stds: np.ndarray
    cv: dict = field(default_factory=dict)  # from labels: folds, auc_mean, auc_std, labelled, positives
    proxy: dict = field(default_factory=dict)  # from a proxy task (workbench.papers.proxymix): its held-out check

    def score(self, frame: pl.DataFrame) -> np.ndarray:
        x = _matrix(frame, self.columns)
        z = (x - self.means) / self.stds
        return z @ self.weights + self.bias

    def describe(self) -> dict:
        out = {"method": "proxy" if self.proxy else "labels", "columns": self.columns,
               "weights": {c: float(w) for c, w in zip(self.columns, self.weights)},
               "bias": self.bias, "means": self.means.tolist(), "stds": self.stds.tolist()}
        out.update({"proxy": self.proxy} if self.proxy else {"cv": self.cv})
        return out

    def table(self) -> pl.DataFrame:
        """One row per column: its weight per standard deviation, the mean and sd it is standardised
        with, and the share of the total absolute weight."""
        a = np.abs(self.weights)
        share = a / a.sum() if a.sum() > 0 else np.zeros_like(a)
        return pl.DataFrame({"column": self.columns, "weight_per_sd": self.weights, "mean": self.means,
                             "sd": self.stds, "share": share})

    def _repr_html_(self) -> str:
        import html

        rows = "".join(f"<tr><td>{html.escape(r['column'])}</td><td>{r['weight_per_sd']:+.3f}</td>"
                       f"<td>{r['mean']:.4g}</td><td>{r['sd']:.4g}</td><td>{100 * r['share']:.0f}%</td></tr>"
                       for r in self.table().to_dicts())
        how = "learned from a proxy task" if self.proxy else "learned from labels"
        return (f"<b>score mix ({how})</b><table><tr><th>column</th><th>weight / sd</th><th>mean</th><th>sd</th>"
                f"<th>share</th></tr>{rows}</table>")


def _matrix(frame: pl.DataFrame, columns: list[str]) -> np.ndarray:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise WorkbenchError(f"no column(s) {missing} to mix (have: {', '.join(frame.columns)})")
    for c in columns:
        if not frame.schema[c].is_numeric():
            raise WorkbenchError(f"column {c!r} is {frame.schema[c]}, not a number")
    return frame.select([pl.col(c).cast(pl.Float64).fill_null(float("nan")) for c in columns]).to_numpy()


def _unique_rows(ids: pl.Series, what: str) -> None:
    """Refuse a null or twice-listed row id, naming its position (``row N``) in the table."""
    nulls = ids.is_null().arg_true()
    if len(nulls):
        raise WorkbenchError(f"{what}: the row id is empty (null)", row=int(nulls[0]))
    again = (~ids.is_first_distinct()).arg_true()
    if len(again):
        pos = int(again[0])
        before = int((ids.head(pos) == ids[pos]).arg_true()[0])
        raise WorkbenchError(f"{what}: row id {ids[pos]} is listed twice (first at row {before})", row=pos)


def learn_mix(frame: pl.DataFrame, labels: pl.DataFrame, columns: list[str], folds: int = 5, seed: int = 0) -> Mix:
    """`frame`: ``row`` + the score columns; `labels`: ``row`` + ``label`` (1 good / 0 bad, or bool).

    Rows are matched by row id, and training sees them in row-id order, so the result (weights, the
    cross-validation folds) depends on neither table's order. Refused (naming the position in the
    table as ``row N``): a null or twice-listed row id in either table, a null label, a label other
    than 0/1."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    if len(columns) < 1:
        raise WorkbenchError("give at least one column to mix")
    if not {"row", "label"} <= set(labels.columns):
        raise WorkbenchError(f"labels need columns row and label (have: {', '.join(labels.columns)})")
    if not labels.schema["row"].is_integer():
        raise WorkbenchError(f"labels: the row column is {labels.schema['row']}, not integer", row=0)
    _unique_rows(frame["row"], "scores")
    _unique_rows(labels["row"], "labels")
    label = labels["label"]
    if label.dtype != pl.Boolean and not label.dtype.is_numeric():
        raise WorkbenchError(f"labels: the label column is {label.dtype}, not 1/0", row=0)
    odd = (label.is_null() | ~label.cast(pl.Float64).is_in([0.0, 1.0])).arg_true()
    if len(odd):
        raise WorkbenchError(f"labels: label {label[int(odd[0])]!r} is not 1 or 0", row=int(odd[0]))
    lab = labels.select(pl.col("row").cast(pl.Int64), pl.col("label").cast(pl.Int8))
    data = frame.join(lab, on="row", how="inner").sort("row")  # row-id order: folds independent of input order
    x = _matrix(data, columns)
    y = data["label"].to_numpy()
    ok = np.all(np.isfinite(x), axis=1)
    x, y = x[ok], y[ok]
    if len(np.unique(y)) < 2:
        raise WorkbenchError("the labels need both kinds (some 1 and some 0) among rows with every score")
    means = x.mean(axis=0)
    stds = x.std(axis=0)
    stds[stds == 0] = 1.0
    z = (x - means) / stds
    model = LogisticRegression(max_iter=1000)
    k = int(min(folds, np.bincount(y).min()))
    cv = {"labelled": int(len(y)), "positives": int(y.sum())}
    if k >= 2:
        auc = cross_val_score(LogisticRegression(max_iter=1000), z, y, scoring="roc_auc",
                              cv=StratifiedKFold(k, shuffle=True, random_state=seed))
        cv.update(folds=k, auc_mean=float(auc.mean()), auc_std=float(auc.std()))
    model.fit(z, y)
    return Mix(list(columns), model.coef_[0].astype(np.float64), float(model.intercept_[0]), means, stds, cv)
