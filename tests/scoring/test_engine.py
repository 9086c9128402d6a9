import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import make_embeddings

import workbench
from workbench.engine import LocalEngine, RayEngine, make_engine
from workbench.errors import EngineError, LayoutError, ShardError


def square(x):
    return x * x


def shard_rows(task):
    collection, i = task
    return os.getpid(), len(collection.embeddings(i)), float(np.asarray(collection.embeddings(i)[0], np.float32).sum())


def fail_on_three(x):
    if x == 3:
        raise ShardError("broken on purpose", "/data/shard_3.npy", row=7)
    return x


def test_local_engine_one_worker_runs_in_order_in_process():
    with make_engine("local") as e:
        assert [r for _, r in e.map(square, range(5))] == [0, 1, 4, 9, 16]
        assert e.describe() == {"engine": "local", "workers": 1}


def test_local_pool_runs_in_other_processes_and_keeps_errors_whole(tmp_path):
    c = workbench.open_collection(make_embeddings(tmp_path / "c", rows=(5, 7, 3)))
    with LocalEngine(2) as e:
        got = dict(e.map(shard_rows, [(c, i) for i in range(3)]))
        assert {i: got[i][1] for i in got} == {0: 5, 1: 7, 2: 3}
        assert all(pid != os.getpid() for pid, _, _ in got.values())
        assert got[1][2] == pytest.approx(float(np.asarray(c.embeddings(1)[0], np.float32).sum()))
        with pytest.raises(ShardError) as err:
            list(e.map(fail_on_three, range(6)))
        assert err.value.path == "/data/shard_3.npy" and err.value.row == 7
    with pytest.raises(EngineError, match="workers"):
        make_engine("local", 0)
    with pytest.raises(EngineError, match="unknown engine"):
        make_engine("spark")


def test_a_collection_pickles_as_its_path_and_is_checked_when_reopened(tmp_path):
    root = make_embeddings(tmp_path / "c", rows=(50, 50), dim=64)
    c = workbench.open_collection(root)
    blob = pickle.dumps(c)
    assert len(blob) < 2000  # the path and options, never the data
    again = pickle.loads(blob)
    assert again.fingerprint == c.fingerprint and len(again) == 100
    np.save(root / "img_emb" / "img_emb_1.npy", np.zeros((50, 64), np.float16))  # rewritten under us
    os.utime(root / "img_emb" / "img_emb_1.npy", (1, 1))
    with pytest.raises(LayoutError, match="changed on disk"):
        pickle.loads(blob)


def test_skipped_shards_survive_pickling(tmp_path):
    root = make_embeddings(tmp_path / "c", rows=(5, 7, 3))
    (root / "img_emb" / "img_emb_1.npy").write_bytes(b"not an npy file")
    c = workbench.open_collection(root, on_error="skip")
    again = pickle.loads(pickle.dumps(c))
    assert len(again) == 8 and [s["shard"] for s in again.skipped] == ["1"]


def test_ray_engine_on_a_real_local_head(ray_head, tmp_path):
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test file
    c = workbench.open_collection(make_embeddings(tmp_path / "c", rows=(5, 7, 3)))
    with RayEngine(address=ray_head) as e:
        assert e.workers == 2 and e.describe()["address"] == ray_head
        got = dict(e.map(shard_rows, [(c, i) for i in range(3)]))
        assert {i: got[i][1] for i in got} == {0: 5, 1: 7, 2: 3}
        assert all(pid != os.getpid() for pid, _, _ in got.values())
        with pytest.raises(ShardError) as err:
            list(e.map(fail_on_three, range(6)))
        assert err.value.path == "/data/shard_3.npy"


def _run(*args, cwd=None):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(os.path.dirname(os.path.dirname(workbench.__file__)))]
                                                        + [p for p in [os.environ.get("PYTHONPATH")] if p])}
    return subprocess.run([sys.executable, "-m", "workbench", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=600)


def test_apply_on_ray_gives_the_local_engines_bytes(ray_head, demo_world, tmp_path):
    import json

    outs = {}
    for name, extra in (("local1", []), ("local2", ["--workers", "2"]),
                        ("ray", ["--engine", "ray", "--address", ray_head])):
        r = _run("apply", "laion2b-en", str(demo_world), str(tmp_path / name), "--rows-per-shard", "1000",
                 "--format", "laion,img2dataset", "--json", *extra)
        assert r.returncode == 0, r.stderr
        outs[name] = json.loads(r.stdout)
        assert _run("verify", str(tmp_path / name)).returncode == 0
    assert outs["ray"]["engine"] == {"engine": "ray", "workers": 2, "address": ray_head}
    assert outs["local1"]["written_rows"] == outs["ray"]["written_rows"] == outs["local1"]["kept"]
    files = {name: {p.relative_to(tmp_path / name).as_posix(): p.read_bytes()
                    for p in sorted((tmp_path / name).rglob("*")) if p.is_file() and p.name != "manifest.json"}
             for name in outs}
    assert len(files["ray"]) > 10
    assert files["local1"] == files["local2"] == files["ray"]


def test_map_placement_on_ray_gives_the_local_bytes(ray_head, demo_world, tmp_path):
    """`workbench map --engine ray` places shards as Ray tasks: the cached map is byte-identical to
    a run here (the demo world: 6 shards of 1,000 rows; sample 1,500, so 4,500 rows are placed)."""
    import polars as pl

    maps = {}
    for name, extra in (("here", []), ("ray", ["--engine", "ray", "--address", ray_head])):
        cache = tmp_path / name
        env_run = subprocess.run([sys.executable, "-m", "workbench", "map", str(demo_world), "--sample", "1500",
                                  "--n-epochs", "20", "--json", *extra], capture_output=True, text=True, timeout=600,
                                 env={**os.environ, "WORKBENCH_CACHE_DIR": str(cache)})
        assert env_run.returncode == 0, env_run.stderr
        import json

        out = json.loads(env_run.stdout)
        assert out["report"]["computed"] >= 1
        maps[name] = pl.read_parquet(sorted(Path(out["cache"]).glob("shard_*.parquet")))
    assert maps["here"].equals(maps["ray"]) and maps["here"]["map_x"].null_count() < len(maps["here"])
