import numpy as np

import workbench
from conftest import make_embeddings, unit_rows
from workbench.io.validate import validate


def test_clean_collection_passes(emb_dir):
    r = validate(workbench.open_collection(emb_dir))
    assert r.ok and r.bad_rows.height == 0 and not r.other_model
    assert all(s.centroid_cosine is not None and s.centroid_cosine > 0.9 for s in r.shards)


def test_nan_inf_zero_rows_reported_with_rows(tmp_path):
    root = make_embeddings(tmp_path / "c", rows=(5, 7, 3), text=False)
    p = root / "img_emb" / "img_emb_1.npy"
    arr = np.load(p)
    arr[2, 3] = np.nan
    arr[4, 0] = np.inf
    arr[6] = 0
    np.save(p, arr)
    r = validate(workbench.open_collection(root), threads=1)
    assert not r.ok
    bad = r.bad_rows.sort("row")
    assert bad["row"].to_list() == [7, 9, 11]
    assert bad["local_row"].to_list() == [2, 4, 6]
    assert bad["problem"].to_list() == ["NaN or inf values", "NaN or inf values", "zero norm"]
    assert all(f.endswith("img_emb_1.npy") for f in bad["file"])
    text = "\n".join(r.lines())
    assert "img_emb_1.npy row 2" in text and "zero norm" in text


def test_not_unit_norm_detected(tmp_path):
    root = make_embeddings(tmp_path / "c", rows=(5, 5), dtype="float32", text=False)
    p = root / "img_emb" / "img_emb_0.npy"
    np.save(p, np.load(p) * 2.5)
    r = validate(workbench.open_collection(root))
    assert r.not_unit_rows == 5 and not r.ok
    assert r.shards[0].norm_min > 2.4
    assert "not unit-norm" in "\n".join(r.lines())


def test_shard_from_another_model_detected(tmp_path):
    root = make_embeddings(tmp_path / "c", rows=(50, 50, 50), text=False, centred=True)
    # same dim, different embedding space: a cone around another direction
    other = unit_rows(50, 16, 77, offset=unit_rows(1, 16, 12345)[0])
    np.save(root / "img_emb" / "img_emb_2.npy", other.astype(np.float16))
    r = validate(workbench.open_collection(root))
    assert [s.file.endswith("img_emb_2.npy") for s in r.other_model] == [True]
    assert "different model" in "\n".join(r.lines())
