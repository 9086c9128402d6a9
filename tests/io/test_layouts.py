import shutil

import numpy as np
import pytest

from conftest import make_datacomp, make_embeddings, make_parquet_only, make_webdataset, unit_rows
from workbench.errors import LayoutError, ShardError
from workbench.io.layouts import detect


@pytest.mark.parametrize("padding,first", [(0, "img_emb_0.npy"), (4, "img_emb_0000.npy"), ("clip", "img_emb_00.npy")])
def test_embedding_paddings_matched_by_number(tmp_path, padding, first):
    rows = tuple(range(1, 13))  # 12 shards: string order would put 10 and 11 before 2
    root = make_embeddings(tmp_path / "c", rows=rows, padding=padding)
    assert (root / "img_emb" / first).exists()
    layout = detect(root)
    assert layout.kind == "embeddings"
    assert [s.number for s in layout.shards] == list(range(12))
    assert [s.rows for s in layout.shards] == list(rows)


def test_float32_and_no_text(tmp_path):
    layout = detect(make_embeddings(tmp_path / "c", dtype="float32", text=False))
    assert layout.shards[0].image.dtype == np.float32 and layout.shards[0].text is None


def test_same_number_two_paddings(tmp_path):
    root = make_embeddings(tmp_path / "c")
    shutil.copy(root / "img_emb" / "img_emb_1.npy", root / "img_emb" / "img_emb_0001.npy")
    with pytest.raises(LayoutError, match="two files for shard 1"):
        detect(root)


def test_missing_counterpart_names_it(tmp_path):
    root = make_embeddings(tmp_path / "c")
    (root / "metadata" / "metadata_2.parquet").unlink()
    with pytest.raises(ShardError, match=r"shard 2 has img_emb/img_emb_2.npy but no file in metadata/"):
        detect(root)


def test_row_count_mismatch_names_files(tmp_path):
    root = make_embeddings(tmp_path / "c")
    np.save(root / "text_emb" / "text_emb_1.npy", unit_rows(6, 16, 0).astype(np.float16))
    with pytest.raises(ShardError, match="row counts differ within shard 1") as e:
        detect(root)
    assert "text_emb_1.npy has 6 rows" in str(e.value) and "metadata_1.parquet has 7 rows" in str(e.value)


def test_dims_differ_between_shards(tmp_path):
    root = make_embeddings(tmp_path / "c", text=False)
    np.save(root / "img_emb" / "img_emb_2.npy", unit_rows(3, 32, 0).astype(np.float16))
    with pytest.raises(ShardError, match="dim 32 differs from 16") as e:
        detect(root)
    assert "img_emb_2.npy" in str(e.value)


def test_broken_parquet_named(tmp_path):
    root = make_embeddings(tmp_path / "c")
    (root / "metadata" / "metadata_1.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(ShardError, match="not a readable parquet file") as e:
        detect(root)
    assert "metadata_1.parquet" in str(e.value)


def test_truncated_shard_found_at_open(tmp_path):
    root = make_embeddings(tmp_path / "c")
    p = root / "img_emb" / "img_emb_1.npy"
    p.write_bytes(p.read_bytes()[:-40])
    with pytest.raises(ShardError, match="truncated") as e:
        detect(root)
    assert "img_emb_1.npy" in str(e.value) and e.value.row == 5


def test_metadata_only_parquet_folder_and_file(tmp_path):
    root = make_parquet_only(tmp_path / "p", rows=(6, 4, 5))
    layout = detect(root)
    assert layout.kind == "parquet" and [s.number for s in layout.shards] == [0, 1, 2]
    single = detect(next(root.glob("part-00001*")))
    assert single.kind == "parquet" and single.shards[0].rows == 4


def test_datacomp_model_choice(tmp_path):
    root = make_datacomp(tmp_path / "dc")
    assert detect(root).model == "l14" and detect(root).shards[0].image.dim == 768
    b32 = detect(root, model="b32")
    assert b32.shards[0].image.dim == 512 and b32.prefer["similarity"] == "clip_b32_similarity_score"
    with pytest.raises(LayoutError, match="not in this DataComp pool"):
        detect(make_datacomp(tmp_path / "only", models=("b32",)), model="l14")


def test_datacomp_missing_pair(tmp_path):
    root = make_datacomp(tmp_path / "dc")
    (root / "00000001.npz").unlink()
    with pytest.raises(ShardError, match="00000001.npz is missing"):
        detect(root)


def test_webdataset_rows_are_successes(tmp_path):
    layout = detect(make_webdataset(tmp_path / "w", per_shard=(3, 2)))
    assert layout.kind == "webdataset" and [s.rows for s in layout.shards] == [3, 2]
    assert layout.images == "webdataset"


def test_webdataset_tar_without_parquet(tmp_path):
    root = make_webdataset(tmp_path / "w")
    (root / "00001.parquet").unlink()
    with pytest.raises(ShardError, match="00001.parquet is missing"):
        detect(root)


def test_webdataset_with_embeddings_beside(tmp_path):
    root = make_webdataset(tmp_path / "w", per_shard=(3, 2))
    make_embeddings(root / "embeddings", rows=(5,))
    layout = detect(root)
    assert layout.kind == "embeddings" and layout.images == "webdataset" and layout.image_dirs == [root]


def test_nothing_there(tmp_path):
    with pytest.raises(LayoutError, match="no collection found"):
        detect(tmp_path)
    with pytest.raises(LayoutError, match="no such file"):
        detect(tmp_path / "nope")


def test_skip_leaves_broken_shards_out_and_says_why(tmp_path):
    root = make_embeddings(tmp_path / "e", rows=(5, 7, 3, 4, 6))
    (root / "img_emb" / "img_emb_1.npy").write_bytes(b"\x93NUMPY garbage")                    # not an npy
    (root / "metadata" / "metadata_2.parquet").write_bytes(b"PAR1 nope")                       # unreadable parquet
    (root / "text_emb" / "text_emb_3.npy").unlink()                                          # missing counterpart
    np.save(root / "img_emb" / "img_emb_4.npy", unit_rows(6, 8, 4).astype(np.float16))       # another model's dim
    np.save(root / "text_emb" / "text_emb_4.npy", unit_rows(6, 8, 5).astype(np.float16))
    with pytest.raises(ShardError):
        detect(root)
    layout = detect(root, on_error="skip")
    assert [s.number for s in layout.shards] == [0]
    why = {s["shard"]: s for s in layout.skipped}
    assert set(why) == {"1", "2", "3", "4"}
    assert "img_emb_1.npy" in why["1"]["error"] and "metadata_2.parquet" in why["2"]["error"]
    assert "text_emb" in why["3"]["error"] and "dim 8" in why["4"]["error"]
    assert any(f.endswith("img_emb_4.npy") for f in why["4"]["files"])


def test_skip_in_the_other_layouts(tmp_path):
    wds = make_webdataset(tmp_path / "w", per_shard=(2, 2))
    (wds / "00001.parquet").unlink()
    layout = detect(wds, on_error="skip")
    assert [s.name for s in layout.shards] == ["00000"] and layout.skipped[0]["shard"] == "00001"
    dc = make_datacomp(tmp_path / "dc", rows=(4, 6))
    (dc / "00000001.npz").write_bytes(b"PK not a zip")
    layout = detect(dc, on_error="skip")
    assert [s.name for s in layout.shards] == ["00000000"] and layout.skipped[0]["shard"] == "00000001"
    pq_dir = make_parquet_only(tmp_path / "p", rows=(6, 4))
    sorted(pq_dir.glob("*.parquet"))[0].write_bytes(b"junk")
    layout = detect(pq_dir, on_error="skip")
    assert len(layout.shards) == 1 and len(layout.skipped) == 1
