"""Fixture factory: small collections in every layout, written the way the real tools write them."""
from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import mmh3
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("WORKBENCH_SHARED", REPO.parent / "shared"))
IMAGES = SHARED / "data" / "images"
SHARED_HEADS = SHARED / "data" / "heads"


def _heads_env() -> None:
    """Head files for the session: a private heads folder (never the user's cache), filled through the
    normal fetch path with the shared copy as a local mirror when it is there."""
    import atexit
    import shutil
    import tempfile

    heads = tempfile.mkdtemp(prefix="wbheads-")
    atexit.register(shutil.rmtree, heads, True)
    os.environ["WORKBENCH_HEADS_DIR"] = heads
    if SHARED_HEADS.is_dir():
        os.environ["WORKBENCH_HEADS_MIRROR"] = str(SHARED_HEADS)
    else:
        os.environ.pop("WORKBENCH_HEADS_MIRROR", None)


_heads_env()  # at import, before any test (or a CLI it starts) loads a head


def needs_shared(*parts: str):
    """Skip marker for tests that need third-party files under ``$WORKBENCH_SHARED/data``: each of
    `parts` (``"heads"``, ``"images/rclip"``, ...) must exist; the reason names what is missing."""
    missing = [str(SHARED / "data" / p) for p in parts if not (SHARED / "data" / p).exists()]
    return pytest.mark.skipif(bool(missing), reason=f"needs third-party files not found: {', '.join(missing)} "
                                                    "(set WORKBENCH_SHARED)")


def unit_rows(n: int, dim: int, seed: int, offset: np.ndarray | None = None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim)).astype(np.float32)
    if offset is not None:
        x = x / np.sqrt(dim) * 0.6 + offset  # a shared direction, like a real CLIP cone
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def laion400m_table(n: int, start: int) -> pa.Table:
    ids = np.arange(start, start + n)
    urls = [f"https://synthetic.invalid/img/{i}.jpg" for i in ids]
    texts = [f"caption number {i}" for i in ids]
    return pa.table({
        "SAMPLE_ID": pa.array(ids, pa.int64()),
        "URL": urls,
        "TEXT": texts,
        "LICENSE": ["?"] * n,
        "NSFW": pa.array(["UNLIKELY", "UNSURE", "NSFW"] * (n // 3) + ["UNLIKELY"] * (n % 3)),
        "similarity": pa.array(np.linspace(0.2, 0.4, n), pa.float64()),
        "WIDTH": pa.array(np.full(n, 640), pa.int32()),
        "HEIGHT": pa.array(np.full(n, 480), pa.int32()),
    })


def laion5b_table(n: int, start: int, with_scores: bool = True) -> pa.Table:
    ids = np.arange(start, start + n)
    urls = [f"https://synthetic.invalid/5b/{i}.png" for i in ids]
    texts = [f"a synthetic caption {i}" for i in ids]
    cols = {"URL": urls, "TEXT": texts}
    if with_scores:
        cols.update({
            "WIDTH": pa.array(np.full(n, 512.0), pa.float64()),
            "HEIGHT": pa.array(np.full(n, 256.0), pa.float64()),
            "similarity": pa.array(np.linspace(0.28, 0.4, n), pa.float64()),
            "hash": pa.array([mmh3.hash64(u + t)[0] for u, t in zip(urls, texts)], pa.int64()),
            "punsafe": pa.array(np.linspace(0, 1, n), pa.float32()),
            "pwatermark": pa.array(np.linspace(1, 0, n), pa.float32()),
        })
    return pa.table(cols)


def write_npy(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, arr)


def make_embeddings(root: Path, rows=(5, 7, 3), dim=16, dtype="float16", padding: int | str = 0,
                    text=True, metadata="laion400m", seed=0, centred=True) -> Path:
    """A clip-retrieval / LAION embedding folder. padding: digits, or "clip" for clip-retrieval's rule."""
    n_parts = len(rows)
    width = int(np.log10(n_parts)) + 1 if padding == "clip" else int(padding)
    offset = unit_rows(1, dim, seed + 999)[0] if centred else None
    start = 0
    for i, n in enumerate(rows):
        name = str(i).zfill(width) if width else str(i)
        write_npy(root / "img_emb" / f"img_emb_{name}.npy", unit_rows(n, dim, seed + i, offset).astype(dtype))
        if text:
            write_npy(root / "text_emb" / f"text_emb_{name}.npy", unit_rows(n, dim, seed + 100 + i, offset).astype(dtype))
        if metadata:
            table = laion400m_table(n, start) if metadata == "laion400m" else laion5b_table(n, start)
            (root / "metadata").mkdir(parents=True, exist_ok=True)
            pq.write_table(table, root / "metadata" / f"metadata_{name}.parquet")
        start += n
    return root


def make_collection(root: Path, arrays: list, text: list | None = None):
    """A LAION-layout collection from given per-shard arrays, with laion400m-style metadata; opened."""
    import workbench

    start = 0
    for i, a in enumerate(arrays):
        write_npy(root / "img_emb" / f"img_emb_{i}.npy", a)
        if text is not None:
            write_npy(root / "text_emb" / f"text_emb_{i}.npy", text[i])
        (root / "metadata").mkdir(parents=True, exist_ok=True)
        pq.write_table(laion400m_table(len(a), start), root / "metadata" / f"metadata_{i}.parquet")
        start += len(a)
    return workbench.open_collection(root)


def make_parquet_only(root: Path, rows=(6, 4), with_scores=True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    start = 0
    for i, n in enumerate(rows):
        name = f"part-{i:05d}-5b54c5d5-bbcf-484d-a2ce-0d6f73df1a36-c000.snappy.parquet"
        pq.write_table(laion5b_table(n, start, with_scores), root / name)
        start += n
    return root


def make_datacomp(root: Path, rows=(4, 6), models=("b32", "l14"), compressed=False, seed=0) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    dims = {"b32": 512, "l14": 768}
    start = 0
    for i, n in enumerate(rows):
        stem = f"{i:08d}"
        uids = [f"{(start + j):032x}" for j in range(n)]
        pq.write_table(pa.table({
            "uid": uids,
            "url": [f"https://synthetic.invalid/dc/{u}.jpg" for u in uids],
            "text": [f"datacomp text {start + j}" for j in range(n)],
            "original_width": pa.array(np.full(n, 300), pa.int64()),
            "original_height": pa.array(np.full(n, 200), pa.int64()),
            "clip_b32_similarity_score": pa.array(np.full(n, 0.25), pa.float32()),
            "clip_l14_similarity_score": pa.array(np.full(n, 0.21), pa.float32()),
        }), root / f"{stem}.parquet")
        arrays = {}
        for m in models:
            arrays[f"{m}_img"] = unit_rows(n, dims[m], seed + i).astype(np.float16)
            arrays[f"{m}_txt"] = unit_rows(n, dims[m], seed + 50 + i).astype(np.float16)
        (np.savez_compressed if compressed else np.savez)(root / f"{stem}.npz", **arrays)
        start += n
    return root


def image_files() -> list[Path]:
    """The real photos of the shared copy (clip-retrieval's test images); the calling test is skipped
    when they are absent."""
    files = sorted(p for p in (IMAGES / "clip_retrieval").glob("*.jpg"))
    if not files:
        pytest.skip(f"needs third-party files not found: {IMAGES / 'clip_retrieval'} (set WORKBENCH_SHARED)")
    return files


def make_webdataset(root: Path, per_shard=(3, 2), failed_per_shard=1) -> Path:
    """img2dataset output: <shard:05d>.tar with jpg/txt/json, and a parquet with failures included."""
    root.mkdir(parents=True, exist_ok=True)
    images = image_files()
    k = 0
    for shard, n in enumerate(per_shard):
        records = []
        with tarfile.open(root / f"{shard:05d}.tar", "w") as tf:
            for j in range(n + failed_per_shard):
                key = f"{shard:05d}{j:04d}"
                failed = j == 0 and failed_per_shard > 0
                rec = {"url": f"https://synthetic.invalid/wds/{key}.jpg", "caption": f"web caption <b>{key}</b>",
                       "key": key, "status": "failed_to_download" if failed else "success",
                       "error_message": "synthetic failure" if failed else None,
                       "width": 256, "height": 256, "original_width": 640, "original_height": 480}
                records.append(rec)
                if failed:
                    continue
                img = images[k % len(images)].read_bytes()
                k += 1
                for ext, data in (("jpg", img), ("txt", rec["caption"].encode()), ("json", json.dumps(rec).encode())):
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size = len(data)
                    tf.addfile(info, io.BytesIO(data))
        pq.write_table(pa.Table.from_pylist(records), root / f"{shard:05d}.parquet")
        (root / f"{shard:05d}_stats.json").write_text(json.dumps({"count": n + failed_per_shard, "successes": n}))
    return root


@pytest.fixture
def emb_dir(tmp_path):
    return make_embeddings(tmp_path / "laion400m")


@pytest.fixture
def shared_data() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"needs third-party files not found: {SHARED} (set WORKBENCH_SHARED)")
    return SHARED / "data"


@pytest.fixture(scope="session")
def demo_master(tmp_path_factory) -> Path:
    """A small synthetic demo world (3 shards), built once per test session; copy it before writing."""
    from workbench.demo.build import build_demo_world

    return build_demo_world(tmp_path_factory.mktemp("demo") / "world", rows=6000, seed=1, rows_per_shard=2500)


@pytest.fixture
def demo_world(demo_master, tmp_path) -> Path:
    """A private copy of the small demo world (score caches get written beside it)."""
    import shutil

    dst = tmp_path / "world"
    shutil.copytree(demo_master, dst, ignore=shutil.ignore_patterns(".workbench"))
    return dst


@pytest.fixture(scope="session")
def ray_head():
    """A real local Ray head (GCS + raylet) on 127.0.0.1, started with ``ray start`` as a curator
    would start one (not Ray's local mode); yields its address, and stops it at the end."""
    import shutil
    import socket
    import subprocess
    import sys
    import tempfile

    ray_bin = Path(sys.executable).parent / "ray"
    assert ray_bin.exists(), "Ray is a dev dependency: pip install -e '.[dev]'"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    temp = tempfile.mkdtemp(prefix="wbray", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    cmd = [str(ray_bin), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
           "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"]
    # token authentication, as Ray >= 2.59 does for local clusters; a driver (this process, the CLI
    # runs below) then needs RAY_AUTH_MODE=token and the token. A fresh machine has no
    # ~/.ray/auth_token, so the head and its drivers get a token of this session's own.
    import secrets

    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    os.environ["RAY_AUTH_MODE"] = "token"
    if saved["RAY_AUTH_TOKEN"] is None and not (Path.home() / ".ray" / "auth_token").exists():
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    proc = subprocess.run(cmd, timeout=180, capture_output=True, text=True)
    assert proc.returncode == 0, f"ray start failed: {proc.stderr[-2000:]}"
    try:
        yield f"127.0.0.1:{port}"
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        subprocess.run([str(ray_bin), "stop", "--force"], timeout=120, capture_output=True)
        shutil.rmtree(temp, ignore_errors=True)


TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory):
    """A tiny open_clip model with random weights: its config JSON and a checkpoint, saved to disk and
    loaded by the code under test through the same path as a real model's."""
    from types import SimpleNamespace

    import open_clip
    import torch

    d = tmp_path_factory.mktemp("tinyclip")
    cfg = d / "wb-tiny-clip-session.json"
    cfg.write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(cfg)
    torch.manual_seed(7)
    model = open_clip.create_model("wb-tiny-clip-session")
    torch.save(model.state_dict(), d / "tiny.pt")
    return SimpleNamespace(cfg=cfg, ckpt=d / "tiny.pt", dir=d)


def stop_after(n: int):
    """A one-worker local engine that stops (as a killed run would) once `n` parts have finished."""
    from workbench.engine import LocalEngine

    class StopAfter(LocalEngine):
        def map(self, fn, tasks, **kw):
            for k, item in enumerate(super().map(fn, tasks, **kw)):
                yield item
                if k + 1 == n:
                    raise KeyboardInterrupt

    return StopAfter(1)
