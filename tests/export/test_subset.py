import numpy as np
import pyarrow.parquet as pq
import pytest

import workbench
from conftest import make_datacomp, make_embeddings, make_parquet_only, make_webdataset
from workbench.errors import WriteError
from workbench.export.exporter import write_subset
from workbench.io.verify import verify


def rows_equal(src, dst_coll, picked):
    """Every written row is identical to its source row: metadata values and embedding bytes."""
    s = src.metadata.collect()
    d = dst_coll.metadata.collect()
    originals = [c for c in d.columns if c != "row"]
    assert s[picked.tolist()].select(originals).equals(d.select(originals))
    if src.has_embeddings:
        for kind in ("image", "text"):
            if getattr(src, "has_text_embeddings" if kind == "text" else "has_embeddings"):
                a = src.take_embeddings(picked, kind, normalize=False)
                b = dst_coll.take_embeddings(np.arange(len(dst_coll)), kind, normalize=False)
                assert a.dtype == b.dtype and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_round_trip_identical_rows(tmp_path, dtype):
    src = workbench.open_collection(make_embeddings(tmp_path / "src", rows=(5, 7, 3), dtype=dtype))
    picked = np.array([0, 2, 5, 6, 11, 12, 14])
    m = write_subset(src, tmp_path / "out", picked[::-1], rows_per_shard=3, padding=4, parameters={"rule": "x"})
    out = workbench.open_collection(tmp_path / "out")
    assert len(out) == 7 and [s.name for s in out.shards] == ["0000", "0001", "0002"]
    rows_equal(src, out, picked)
    assert m["source"]["rows"] == 15 and m["source"]["fingerprint"] == src.fingerprint
    assert m["parameters"]["selected_rows"] == 7 and m["parameters"]["rule"] == "x"
    # the parquet schema (types included) is the source's
    assert pq.read_schema(tmp_path / "out" / "metadata" / "metadata_0000.parquet").equals(
        pq.read_schema(src.shards[0].metadata))
    assert verify(tmp_path / "out").ok


def test_mask_and_all_rows(tmp_path):
    src = workbench.open_collection(make_embeddings(tmp_path / "src"))
    mask = np.zeros(15, bool)
    mask[[1, 14]] = True
    write_subset(src, tmp_path / "m", mask)
    assert len(workbench.open_collection(tmp_path / "m")) == 2
    write_subset(src, tmp_path / "all")
    rows_equal(src, workbench.open_collection(tmp_path / "all"), np.arange(15))
    with pytest.raises(ValueError, match="mask needs 15"):
        write_subset(src, tmp_path / "bad", np.ones(3, bool))


def test_other_layouts_write_laion_layout(tmp_path):
    dc = workbench.open_collection(make_datacomp(tmp_path / "dc"), model="b32")
    write_subset(dc, tmp_path / "dc_out", [1, 8])
    out = workbench.open_collection(tmp_path / "dc_out")
    assert out.layout == "embeddings" and out.dim == 512
    rows_equal(dc, out, np.array([1, 8]))

    wds = workbench.open_collection(make_webdataset(tmp_path / "wds"))
    write_subset(wds, tmp_path / "wds_out", [0, 4])
    out = workbench.open_collection(tmp_path / "wds_out")
    assert out.metadata.collect()["key"].to_list() == ["000000001", "000010002"]

    meta = workbench.open_collection(make_parquet_only(tmp_path / "p"))
    write_subset(meta, tmp_path / "p_out", [9, 0, 3])
    out = workbench.open_collection(tmp_path / "p_out")
    assert out.layout == "parquet" and not out.has_embeddings
    rows_equal(meta, out, np.array([0, 3, 9]))


def test_refuses_source_and_leaves_it_intact(tmp_path):
    root = make_embeddings(tmp_path / "src")
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    src = workbench.open_collection(root)
    with pytest.raises(WriteError, match="refusing"):
        write_subset(src, root / "subset", [0])
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before


def test_out_of_range_rows(tmp_path):
    src = workbench.open_collection(make_embeddings(tmp_path / "src"))
    with pytest.raises(IndexError):
        write_subset(src, tmp_path / "o", [99])
    assert not (tmp_path / "o").exists()


def test_model_identity_carried_to_subset(tmp_path):
    dc = workbench.open_collection(make_datacomp(tmp_path / "dc"), model="b32")
    m = write_subset(dc, tmp_path / "a", [0, 1])
    assert m["model"] == {"name": "ViT-B-32", "source": "datacomp"}
    again = workbench.open_collection(tmp_path / "a")
    assert again.model_identity == m["model"]
    m2 = write_subset(again, tmp_path / "b", [1])
    assert m2["model"] == m["model"] and m2["source"]["manifest_sha256"]


def test_empty_selection_gives_empty_manifest(tmp_path):
    src = workbench.open_collection(make_embeddings(tmp_path / "src"))
    m = write_subset(src, tmp_path / "none", [])
    assert m["rows"] == 0 and m["files"] == [] and verify(tmp_path / "none").ok
