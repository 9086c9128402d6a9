"""Bad scores, labels and rows files: `sample`, `mix` and `export` refuse them with one line naming
the file and, where one row is at fault, its position in the file (``row N``, 0-based); nothing is
written and the sources are unchanged (the shared harness, tests/badinput.py)."""
from __future__ import annotations

import polars as pl
import pytest
from badinput import refused
from conftest import make_embeddings

N = 15  # rows of the collection: shards of 5, 7 and 3


@pytest.fixture
def coll(tmp_path):
    return make_embeddings(tmp_path / "c", rows=(5, 7, 3))


def parquet(path, cols: dict, schema=None):
    pl.DataFrame(cols, schema=schema).write_parquet(path)
    return path


def csv_named_parquet(path):
    path.write_text("row,s\n0,0.1\n")
    return path


def truncated(path):
    parquet(path, {"row": list(range(N)), "s": [float(i) for i in range(N)]})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # no footer
    return path


def corrupt_pages(path):
    """A footer that reads, data pages that do not (the schema is fine, the values are not)."""
    parquet(path, {"row": list(range(N)), "s": [float(i) for i in range(N)]})
    data = bytearray(path.read_bytes())
    for i in range(4, len(data) // 3):
        data[i] = 0xFF
    path.write_bytes(bytes(data))
    return path


# -- sample --scores ------------------------------------------------------------------------------
SCORES_CASES = {
    "no row column": (lambda p: parquet(p, {"id": [0, 1], "s": [0.1, 0.2]}), ["row column"]),
    "a row id twice": (lambda p: parquet(p, {"row": [4, 0, 1, 0], "s": [0.1, 0.2, 0.3, 0.4]}),
                       ["row 3", "row id 0 is listed twice", "first at row 1"]),
    "a null row id": (lambda p: parquet(p, {"row": [0, None, 2], "s": [0.1, 0.2, 0.3]}), ["row 1", "null"]),
    "string row ids": (lambda p: parquet(p, {"row": ["0", "1"], "s": [0.1, 0.2]}), ["row 0", "not an integer"]),
    "not a parquet": (csv_named_parquet, ["cannot read"]),
    "a truncated parquet": (truncated, ["cannot read"]),
    "damaged data pages": (corrupt_pages, ["cannot read"]),
}


@pytest.mark.parametrize("case", SCORES_CASES)
def test_sample_refuses_a_bad_scores_file(coll, tmp_path, case):
    make, names = SCORES_CASES[case]
    f = make(tmp_path / "scores.parquet")
    out = tmp_path / "picks.parquet"
    refused(["sample", coll, "--by", "s", "--method", "top", "--n", 2, "--scores", f, "--out", out],
            names=[f.name, *names], sources=[coll, f], dst=out)


def test_sample_refuses_a_scores_column_the_collection_has_too(coll, tmp_path):
    f = parquet(tmp_path / "scores.parquet", {"row": list(range(N)), "similarity": [0.5] * N})
    out = tmp_path / "picks.parquet"
    refused(["sample", coll, "--by", "similarity", "--method", "top", "--n", 2, "--scores", f, "--out", out],
            names=[f.name, "similarity", "both in the collection and in the scores file"], sources=[coll, f], dst=out)


def test_mix_refuses_a_scores_file_with_a_row_twice(coll, tmp_path):
    f = parquet(tmp_path / "scores.parquet", {"row": [0, 1, 2, 2], "s": [0.1, 0.2, 0.3, 0.4]})
    labels = parquet(tmp_path / "labels.parquet", {"row": [0, 1, 2, 3], "label": [1, 0, 1, 0]})
    out = tmp_path / "mix.parquet"
    refused(["mix", coll, "--column", "s", "--scores", f, "--labels", labels, "--out", out],
            names=[f.name, "row 3", "listed twice"], sources=[coll, f, labels], dst=out)


@pytest.mark.parametrize("cols, names", [
    ({"row": [0, 1, 1, 3], "label": [1, 0, 1, 0]}, ["row 2", "listed twice", "first at row 1"]),
    ({"row": [0, 1, 2, 3], "label": [1, 0, None, 0]}, ["row 2", "not 1 or 0"]),
    ({"row": [0, 1, 2, 3], "label": [1, 0, 2, 0]}, ["row 2", "not 1 or 0"]),
], ids=["a row labelled twice", "a null label", "label 2"])
def test_mix_refuses_bad_labels(coll, tmp_path, cols, names):
    labels = parquet(tmp_path / "labels.parquet", cols)
    out = tmp_path / "mix.parquet"
    refused(["mix", coll, "--column", "similarity", "--labels", labels, "--out", out],
            names=[labels.name, *names], sources=[coll, labels], dst=out)


# -- export --rows -----------------------------------------------------------------------------------
I64 = pl.Int64
ROWS_CASES = {
    "no row column": ({"id": [0, 1]}, None, ["row column"]),
    "a null row id": ({"row": [0, 1, None]}, None, ["row 2", "null"]),
    "string row ids": ({"row": ["0", "1"]}, None, ["row 0", "not an integer"]),
    "a fractional row id": ({"row": [2.5, 1.0]}, None, ["row 0", "not a whole number"]),
    "a row id out of range": ({"row": [0, N, 2]}, None, ["row 1", f"row id {N} is not in the collection", f"0..{N - 1}"]),
    "a negative row id": ({"row": [0, 3, -1]}, None, ["row 2", "row id -1 is not in the collection"]),
    "a negative count": ({"row": [0, 1], "count": [1, -2]}, None, ["row 1", "count -2 is negative"]),
    "a null count": ({"row": [0, 1], "count": [1, None]}, {"row": I64, "count": I64}, ["row 1", "null"]),
    "a fractional count": ({"row": [0, 1, 2], "count": [1.0, 2.0, 1.5]}, None, ["row 2", "not a whole number"]),
    "a NaN count": ({"row": [0, 1], "count": [float("nan"), 1.0]}, None, ["row 0", "not a whole number"]),
    "string counts": ({"row": [0, 1], "count": ["1", "2"]}, None, ["row 0", "not an integer"]),
    "a row id twice with counts": ({"row": [5, 0, 7, 0], "count": [1, 2, 1, 3]}, None,
                                   ["row 3", "row id 0 is listed twice", "first at row 1"]),
}


@pytest.mark.parametrize("case", ROWS_CASES)
def test_export_refuses_a_bad_rows_file(coll, tmp_path, case):
    cols, schema, names = ROWS_CASES[case]
    f = parquet(tmp_path / "rows.parquet", cols, schema)
    dst = tmp_path / "out"
    refused(["export", coll, dst, "--rows", f], names=[f.name, *names], sources=[coll, f], dst=dst)


@pytest.mark.parametrize("make", [csv_named_parquet, truncated, corrupt_pages],
                         ids=["not a parquet", "a truncated parquet", "damaged data pages"])
def test_export_refuses_an_unreadable_rows_file(coll, tmp_path, make):
    f = make(tmp_path / "rows.parquet")
    dst = tmp_path / "out"
    refused(["export", coll, dst, "--rows", f], names=[f.name, "cannot read"], sources=[coll, f], dst=dst)
