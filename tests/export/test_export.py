import json
import tarfile

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import stop_after, make_datacomp, make_embeddings, make_webdataset

import workbench
from workbench.engine import LocalEngine
from workbench.errors import IncompleteError, WorkbenchError, WriteError
from workbench.export.exporter import FORMATS, export
from workbench.export.formats import cut_parts, uid_pairs
from workbench.io.verify import verify


def _files(root):
    """relative path -> bytes of every file but the manifest (whose `created` is a time)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "manifest.json"}


def _manifest(root):
    m = json.loads((root / "manifest.json").read_text())
    m.pop("created")
    return m


def test_cut_parts_follows_source_order():
    kept = [np.array([0, 2, 3]), np.array([], np.int64), np.array([1, 4])]
    parts = cut_parts("laion", kept, 2)
    assert [p.rows for p in parts] == [2, 2, 1]
    assert [(pc.shard, pc.rows.tolist()) for p in parts for pc in p.pieces] == [(0, [0, 2]), (0, [3]), (2, [1]), (2, [4])]
    assert [p.first for p in parts] == [0, 2, 4]


def test_laion_rows_are_byte_identical_and_counted(tmp_path):
    src = workbench.open_collection(make_embeddings(tmp_path / "src", rows=(5, 7, 3)))
    mask = np.zeros(len(src), bool)
    mask[[0, 3, 4, 5, 9, 11, 12, 14]] = True
    res = export(src, tmp_path / "out", mask, rows_per_shard=3, padding=4, parameters={"why": "test"})
    m = res.manifest
    assert m["rows"] == mask.sum() and [s["rows"] for s in m["shards"]] == [3, 3, 2]
    assert [s["name"] for s in m["shards"]] == ["0000", "0001", "0002"]
    assert m["parameters"]["why"] == "test" and m["source"]["fingerprint"] == src.fingerprint
    out = workbench.open_collection(tmp_path / "out")
    picked = np.nonzero(mask)[0]
    for kind in ("image", "text"):
        got = np.concatenate([np.asarray(out.embeddings(i, kind)) for i in range(len(out.shards))])
        assert got.tobytes() == src.take_embeddings(picked, kind, normalize=False).tobytes()
    src_meta = src.metadata.collect()[picked.tolist()].drop("row")
    assert out.metadata.collect().drop("row").equals(src_meta)
    assert verify(tmp_path / "out").ok


def test_same_output_whatever_the_worker_count(tmp_path):
    src = workbench.open_collection(make_embeddings(tmp_path / "src", rows=(50, 70, 30), metadata="laion5b"))
    mask = np.random.default_rng(0).random(len(src)) < 0.6
    a = export(src, tmp_path / "a", mask, rows_per_shard=16, formats=("laion", "img2dataset")).manifest
    with LocalEngine(2) as engine:
        b = export(src, tmp_path / "b", mask, rows_per_shard=16, formats=("laion", "img2dataset"), engine=engine).manifest
    assert a["outputs"]["laion"]["parts"] == 6
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    assert _manifest(tmp_path / "a")["files"] == _manifest(tmp_path / "b")["files"]
    assert a["plan"] == b["plan"]


def test_interrupted_export_resumes_without_redoing_parts(tmp_path):
    src = workbench.open_collection(make_embeddings(tmp_path / "src", rows=(40, 40)))
    mask = np.arange(len(src)) % 3 != 0
    with pytest.raises(KeyboardInterrupt):
        export(src, tmp_path / "out", mask, rows_per_shard=10, engine=stop_after(2))
    out = tmp_path / "out"
    assert not (out / "manifest.json").exists() and not verify_ok(out)
    first = out / "img_emb" / "img_emb_0.npy"
    stamp = first.stat().st_mtime_ns
    res = export(src, out, mask, rows_per_shard=10)
    assert res.run["resumed"] == 2 and res.run["done_now"] == 4
    assert first.stat().st_mtime_ns == stamp  # a finished part is not redone
    export(src, tmp_path / "fresh", mask, rows_per_shard=10)
    assert _files(out) == _files(tmp_path / "fresh")
    assert verify(out).ok and not (out / ".staging").exists()
    again = export(src, out, mask, rows_per_shard=10)  # finished: nothing to do
    assert again.run["already_complete"] and first.stat().st_mtime_ns == stamp


def verify_ok(folder) -> bool:
    try:
        return verify(folder).ok
    except workbench.errors.WorkbenchError:
        return False


def test_a_different_plan_is_refused(tmp_path):
    src = workbench.open_collection(make_embeddings(tmp_path / "src", rows=(40, 40)))
    mask = np.arange(len(src)) % 2 == 0
    with pytest.raises(KeyboardInterrupt):
        export(src, tmp_path / "out", mask, rows_per_shard=10, engine=stop_after(1))
    with pytest.raises(WriteError, match="unfinished export of a different plan.*selection"):
        export(src, tmp_path / "out", ~mask, rows_per_shard=10)
    export(src, tmp_path / "done", mask, rows_per_shard=10)
    with pytest.raises(WriteError, match="finished export of another"):
        export(src, tmp_path / "done", mask, rows_per_shard=20)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(WriteError, match="not empty"):
        export(src, tmp_path / "busy", mask)
    with pytest.raises(WriteError, match="source"):
        export(src, tmp_path / "src" / "inside", mask)


def test_a_failing_part_keeps_finished_parts_and_no_partial_file(tmp_path, monkeypatch):
    import workbench.export.formats as ex

    src = workbench.open_collection(make_embeddings(tmp_path / "src", rows=(30, 30)))
    real = ex.write_laion_part

    def disk_full_on_part_3(collection, part, tmp, options):
        files = real(collection, part, tmp, options)
        if part.number == 3:
            raise OSError(28, "No space left on device")
        return files

    monkeypatch.setitem(ex.WRITERS, "laion", disk_full_on_part_3)
    with pytest.raises(IncompleteError, match="No space left.*3 of 6 parts"):
        export(src, tmp_path / "out", None, rows_per_shard=10)
    out = tmp_path / "out"
    assert sorted(p.name for p in (out / "img_emb").iterdir()) == ["img_emb_0.npy", "img_emb_1.npy", "img_emb_2.npy"]
    assert not list((out / ".staging" / "tmp").glob("*"))  # the failed part's files are gone
    monkeypatch.setitem(ex.WRITERS, "laion", real)
    res = export(src, out, None, rows_per_shard=10)
    assert res.run["resumed"] == 3 and verify(out).ok


def test_free_space_is_checked_before_writing(tmp_path, monkeypatch):
    import workbench.export.exporter as ex

    src = workbench.open_collection(make_embeddings(tmp_path / "src", rows=(30, 30)))
    monkeypatch.setattr(ex, "free_bytes", lambda path: 1000)
    with pytest.raises(WriteError, match="not enough free space.*needs about"):
        export(src, tmp_path / "out", None)
    assert not (tmp_path / "out" / "img_emb").exists()


def test_img2dataset_lists(tmp_path):
    src = workbench.open_collection(make_embeddings(tmp_path / "src", rows=(5, 7), metadata="laion5b"))
    res = export(src, tmp_path / "out", [1, 2, 8], formats=("img2dataset",), rows_per_shard=2)
    assert not (tmp_path / "out" / "img_emb").exists()
    t = pq.read_table(tmp_path / "out" / "img2dataset").to_pydict()
    assert t["row"] == [1, 2, 8] and t.keys() == {"url", "caption", "row"}
    meta = src.metadata.collect()
    assert t["url"] == meta["URL"].gather([1, 2, 8]).to_list()
    assert t["caption"] == meta["TEXT"].gather([1, 2, 8]).to_list()
    assert res.manifest["outputs"]["img2dataset"] == {"parts": 2, "rows": 3}
    assert verify(tmp_path / "out").ok


def test_datacomp_uids_sorted_as_datacomp_reads_them(tmp_path):
    src = workbench.open_collection(make_datacomp(tmp_path / "dc", rows=(4, 6)))
    export(src, tmp_path / "out", [7, 1, 5], formats=("datacomp",))
    uids = np.load(tmp_path / "out" / "datacomp" / "uids.npy", allow_pickle=False)
    assert uids.dtype == np.dtype("u8,u8")
    want = sorted(int(u, 16) for u in src.metadata.collect()["uid"].gather([1, 5, 7]).to_list())
    assert [(int(a) << 64) | int(b) for a, b in uids.tolist()] == want
    assert uid_pairs(["0" * 16 + "f" * 16])[0].tolist() == (0, 2**64 - 1)
    with pytest.raises(WriteError, match="uid column"):
        export(workbench.open_collection(make_embeddings(tmp_path / "e")), tmp_path / "o2", [0], formats=("datacomp",))
    assert not (tmp_path / "o2").exists()


def test_webdataset_from_source_tars(tmp_path):
    src = workbench.open_collection(make_webdataset(tmp_path / "wds", per_shard=(3, 4)))
    meta = src.metadata.collect()
    res = export(src, tmp_path / "out", [0, 2, 3, 6], formats=("webdataset",), samples_per_tar=3)
    out = tmp_path / "out" / "webdataset"
    assert sorted(p.name for p in out.iterdir()) == ["00000.parquet", "00000.tar", "00001.parquet", "00001.tar"]
    with tarfile.open(out / "00000.tar") as tf:
        names = tf.getnames()
        assert names == ["000000000.jpg", "000000000.json", "000000000.txt", "000000001.jpg", "000000001.json",
                         "000000001.txt", "000000002.jpg", "000000002.json", "000000002.txt"]
        assert {m.mtime for m in tf.getmembers()} == {0}
        j = json.loads(tf.extractfile("000000001.json").read())
        assert j["key"] == "000000001" and j["source_row"] == 2 and j["source_key"] == meta["key"][2]
        assert tf.extractfile("000000001.txt").read().decode() == meta["caption"][2]  # web text kept verbatim
        src_img = workbench.io.images.image_bytes(src, 2)
        assert tf.extractfile("000000001.jpg").read() == src_img
    assert res.manifest["outputs"]["webdataset"]["samples"] == 4
    again = workbench.open_collection(out)  # the output is itself a webdataset collection
    assert len(again) == 4 and again.metadata.collect()["source_row"].to_list() == [0, 2, 3, 6]
    assert verify(tmp_path / "out").ok


def test_webdataset_counts_rows_without_images(tmp_path, shared_data):
    import pyarrow as pa

    root = make_embeddings(tmp_path / "src", rows=(3,), metadata=None)
    photos = sorted((shared_data / "images" / "clip_retrieval").glob("*.jpg"))[:2]
    (root / "metadata").mkdir()
    pq.write_table(pa.table({"image_path": [str(photos[0]), str(tmp_path / "gone.jpg"), str(photos[1])],
                             "caption": ["a", "b", "c"]}), root / "metadata" / "metadata_0.parquet")
    src = workbench.open_collection(root)
    res = export(src, tmp_path / "out", None, formats=("laion", "webdataset"))
    stats = res.manifest["outputs"]["webdataset"]
    assert stats["samples"] == 2 and stats["no_image"] == 1
    t = pq.read_table(tmp_path / "out" / "webdataset" / "00000.parquet").to_pydict()
    assert t["status"] == ["success", "no_image", "success"]
    with tarfile.open(tmp_path / "out" / "webdataset" / "00000.tar") as tf:
        assert tf.extractfile("000000002.jpg").read() == photos[1].read_bytes()
    assert res.manifest["rows"] == 3  # the LAION layout keeps every selected row
    with pytest.raises(WriteError, match="needs images"):
        export(workbench.open_collection(make_embeddings(tmp_path / "e")), tmp_path / "o", None, formats=("webdataset",))


def test_all_formats_are_known():
    assert FORMATS == ("laion", "webdataset", "img2dataset", "datacomp")


def test_manifest_records_the_source_files(tmp_path):
    src = workbench.open_collection(make_embeddings(tmp_path / "src", rows=(5, 7)))
    m = export(src, tmp_path / "out", [0, 6]).manifest
    files = m["source"]["shard_files"]
    assert [f["rows"] for f in files] == [5, 7]
    assert {e["path"] for e in files[1]["files"]} == {"img_emb/img_emb_1.npy", "text_emb/text_emb_1.npy",
                                                     "metadata/metadata_1.parquet"}
    assert all(e["bytes"] > 0 for f in files for e in f["files"])


def test_counts_repeat_rows_in_source_order(tmp_path):
    src = workbench.open_collection(make_embeddings(tmp_path / "src", rows=(5, 7)))
    counts = np.zeros(len(src), np.int64)
    counts[[1, 6, 11]] = [3, 1, 2]
    m = export(src, tmp_path / "out", counts=counts, rows_per_shard=4, formats=("laion", "img2dataset")).manifest
    assert m["rows"] == 6 and m["parameters"]["distinct_rows"] == 3
    out = workbench.open_collection(tmp_path / "out")
    want = [1, 1, 1, 6, 11, 11]
    got = np.concatenate([np.asarray(out.embeddings(i)) for i in range(len(out.shards))])
    assert got.tobytes() == src.take_embeddings(want, normalize=False).tobytes()
    assert pq.read_table(tmp_path / "out" / "img2dataset").column("row").to_pylist() == want
    with pytest.raises(WriteError, match="negative"):
        export(src, tmp_path / "neg", counts=-counts)
    dc = workbench.open_collection(make_datacomp(tmp_path / "dc", rows=(4, 6)))
    c2 = np.zeros(len(dc), np.int64)
    c2[[2, 7]] = [4, 2]
    export(dc, tmp_path / "dco", counts=c2, formats=("datacomp",))
    assert len(np.load(tmp_path / "dco" / "datacomp" / "uids.npy")) == 2  # a uid subset is a set


def test_a_selection_with_counts_from_sampling_is_exported_with_its_repeats(tmp_path):
    from workbench.curation.recipe import Recipe, evaluate
    from workbench.papers.sampling import as_selection, soft_cap

    src = workbench.open_collection(make_embeddings(tmp_path / "src", rows=(5, 7)))
    counts = soft_cap(np.linspace(0, 3, len(src)), 30, penalty=0.5, batch=4, seed=1)
    sel = as_selection(counts, "soft-cap")
    assert sel.kept == int((counts > 0).sum()) and sel.repeats.sum() == 30
    assert sel.counts().row(0, named=True)["rule"] == "not sampled (soft-cap)"
    ma = export(src, tmp_path / "a", sel).manifest
    export(src, tmp_path / "b", counts=counts)
    assert ma["parameters"]["distinct_rows"] == sel.kept
    for rel in ("img_emb/img_emb_0.npy", "text_emb/text_emb_0.npy", "metadata/metadata_0.parquet"):
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    assert workbench.open_collection(tmp_path / "a").info()["rows"] == 30
    # a recipe's selection (no counts) writes its kept rows once
    meta = src.metadata.collect()
    plain = evaluate(meta, Recipe.from_dict({"rules": [{"keep_rows": [0, 3, 8]}]}))
    export(src, tmp_path / "c", plain)
    assert workbench.open_collection(tmp_path / "c").info()["rows"] == 3
    with pytest.raises(WriteError, match="not both"):
        export(src, tmp_path / "d", sel, counts=counts)
    with pytest.raises(WorkbenchError, match="non-negative"):
        as_selection(-counts)


def test_the_free_space_estimate_counts_image_files_for_webdataset(tmp_path, shared_data, monkeypatch):
    import pyarrow as pa

    import workbench.export.exporter as ex

    photos = sorted((shared_data / "images" / "clip_retrieval").glob("*.jpg"))[:3]
    root = make_embeddings(tmp_path / "src", rows=(3,), metadata=None)
    (root / "metadata").mkdir()
    pq.write_table(pa.table({"image_path": [str(p) for p in photos], "caption": ["a", "b", "c"]}),
                   root / "metadata" / "metadata_0.parquet")
    src = workbench.open_collection(root)
    kept = ex._kept_per_shard(src, None)
    images = sum(p.stat().st_size for p in photos)
    assert ex._needed_bytes(src, kept, ("webdataset",)) >= images
    assert ex._needed_bytes(src, kept, ("img2dataset",)) < images
    monkeypatch.setattr(ex, "free_bytes", lambda path: images // 2)  # room for the embeddings, not the images
    with pytest.raises(WriteError, match="not enough free space"):
        export(src, tmp_path / "out", None, formats=("webdataset",))
    assert not (tmp_path / "out" / "webdataset").exists()
