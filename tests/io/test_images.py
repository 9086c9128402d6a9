import pyarrow as pa
import pyarrow.parquet as pq

import workbench
from conftest import image_files, make_embeddings, make_webdataset
from workbench.io.images import image_bytes, tar_index


def test_webdataset_images_reachable(tmp_path):
    root = make_webdataset(tmp_path / "w", per_shard=(3, 2))
    c = workbench.open_collection(root)
    files = image_files()
    for row in range(len(c)):
        assert image_bytes(c, row) == files[row % len(files)].read_bytes()
    idx = tar_index(str(root / "00000.tar"))
    assert "000000001.jpg" in idx and "000000000.jpg" not in idx  # the failed download has no image


def test_embeddings_beside_tars_find_images_by_key(tmp_path):
    root = make_webdataset(tmp_path / "w", per_shard=(3, 2))
    emb = make_embeddings(root / "embeddings", rows=(2,), metadata=None)
    keys = ["000010002", "000000003"]  # clip-retrieval's order need not be the tars'
    (emb / "metadata").mkdir()
    pq.write_table(pa.table({"image_path": keys, "caption": ["a", "b"]}), emb / "metadata" / "metadata_0.parquet")
    c = workbench.open_collection(root)
    assert c.images == "webdataset"
    files = image_files()
    assert image_bytes(c, 0) == files[4].read_bytes()
    assert image_bytes(c, 1) == files[2].read_bytes()


def test_local_image_paths(tmp_path):
    root = make_embeddings(tmp_path / "c", rows=(2,), metadata=None)
    files = image_files()[:2]
    (root / "metadata").mkdir()
    pq.write_table(pa.table({"image_path": [str(files[0]), str(tmp_path / "gone.jpg")]}), root / "metadata" / "metadata_0.parquet")
    c = workbench.open_collection(root)
    assert image_bytes(c, 0) == files[0].read_bytes()
    assert image_bytes(c, 1) is None


def test_relative_image_paths_resolve_beside_the_collection(tmp_path, monkeypatch):
    import shutil

    root = make_embeddings(tmp_path / "c", rows=(2,), metadata=None)
    files = image_files()[:2]
    (root / "pics").mkdir()
    shutil.copy(files[0], root / "pics" / "a.jpg")
    (root / "metadata").mkdir()
    pq.write_table(pa.table({"image_path": ["pics/a.jpg", "elsewhere/b.jpg"]}), root / "metadata" / "metadata_0.parquet")
    (tmp_path / "elsewhere").mkdir()
    shutil.copy(files[1], tmp_path / "elsewhere" / "b.jpg")
    monkeypatch.chdir(tmp_path / "elsewhere")  # not where the collection is
    c = workbench.open_collection(root)
    assert image_bytes(c, 0) == files[0].read_bytes()
    assert image_bytes(c, 1) is None  # not beside the collection, nor from here
    monkeypatch.chdir(tmp_path)  # a path relative to the current directory still works when nothing is beside it
    assert image_bytes(c, 1) == files[1].read_bytes()
