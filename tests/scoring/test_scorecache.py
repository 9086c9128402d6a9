"""The per-shard score cache: keyed by spec, stamped by source files, written atomically."""
import os

import polars as pl

import workbench
from conftest import make_embeddings
from workbench.scoring.scorecache import ScoreCache, cache_root, shard_stamp, spec_key


def test_store_load_and_states(tmp_path):
    c = workbench.open_collection(make_embeddings(tmp_path / "c", rows=(3, 2)))
    cache = ScoreCache(c, "my col", {"scorer": "x", "t": 1})
    assert cache.folder.parent == cache_root(c) == tmp_path / "c" / ".workbench" / "scores"
    assert cache.folder.name.startswith("my_col-") and cache.state(0) == "missing"
    cache.store(0, pl.DataFrame({"my col": [1.0, 2.0, None]}))
    assert cache.state(0) == "fresh" and cache.load(0)["my col"].to_list() == [1.0, 2.0, None]
    assert not list(cache.folder.glob("*.partial"))
    # a frame of the wrong length is not fresh
    cache.store(1, pl.DataFrame({"my col": [1.0]}))
    assert cache.state(1) == "stale"
    # another spec, another key; the same spec, the same key
    assert spec_key({"t": 1, "scorer": "x"}) == cache.key != spec_key({"scorer": "x", "t": 2})
    assert ScoreCache(c, "my col", {"scorer": "x", "t": 2}).state(0) == "missing"
    # touching the metadata file changes the stamp of that shard only
    before = [shard_stamp(c, 0), shard_stamp(c, 1)]
    meta = c.shards[1].files[-1]
    st = meta.stat()
    os.utime(meta, ns=(st.st_atime_ns, st.st_mtime_ns + 5))
    assert shard_stamp(c, 0) == before[0] and shard_stamp(c, 1) != before[1]


def test_fallback_folder_is_per_collection(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path / "elsewhere"))
    a = workbench.open_collection(make_embeddings(tmp_path / "a", rows=(2,)))
    b = workbench.open_collection(make_embeddings(tmp_path / "b", rows=(2,)))
    assert cache_root(a).parent == tmp_path / "elsewhere" / "scores" and cache_root(a) != cache_root(b)
