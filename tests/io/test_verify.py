import json

import numpy as np
import pytest

import workbench
from conftest import make_embeddings
from workbench.errors import ManifestError
from workbench.export.exporter import write_subset
from workbench.io.verify import verify


@pytest.fixture
def written(tmp_path):
    src = workbench.open_collection(make_embeddings(tmp_path / "src"))
    write_subset(src, tmp_path / "out", rows_per_shard=6)
    return tmp_path / "out"


def test_clean(written):
    r = verify(written)
    assert r.ok and r.files_checked == 9


def test_one_flipped_byte(written):
    p = written / "img_emb" / "img_emb_1.npy"
    data = bytearray(p.read_bytes())
    data[-1] ^= 1
    p.write_bytes(bytes(data))
    r = verify(written)
    assert not r.ok and any("img_emb_1.npy: sha256 differs" in x for x in r.problems)


def test_missing_extra_and_resized(written):
    (written / "text_emb" / "text_emb_0.npy").unlink()
    np.save(written / "img_emb" / "img_emb_9.npy", np.ones((1, 16), np.float16))
    with open(written / "metadata" / "metadata_2.parquet", "ab") as f:
        f.write(b"\0")
    problems = "\n".join(verify(written).problems)
    assert "text_emb_0.npy: missing" in problems
    assert "img_emb_9.npy: not in the manifest" in problems
    assert "metadata_2.parquet" in problems and "bytes" in problems


def test_bad_or_no_manifest(tmp_path, written):
    with pytest.raises(ManifestError, match="no manifest.json"):
        verify(tmp_path)
    (written / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        verify(written)
    (written / "manifest.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(ManifestError, match="not a workbench manifest"):
        verify(written)


def test_rows_in_manifest_checked(written):
    m = json.loads((written / "manifest.json").read_text())
    m["rows"] = 99
    (written / "manifest.json").write_text(json.dumps(m))
    assert any("shards hold 15 rows, manifest says 99" in p for p in verify(written).problems)
