import json
import subprocess
import sys

import numpy as np
import polars as pl
import pytest
from conftest import stop_after, IMAGES, make_webdataset, needs_shared

import workbench
from workbench.export.embed import embed
from workbench.models.encoders import load_encoder
from workbench.engine import LocalEngine
from workbench.io.verify import verify

RCLIP = IMAGES / "rclip"
needs_rclip = needs_shared("images/rclip")


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "manifest.json"}


@pytest.fixture(scope="module")
def rclip_run(tiny_clip, tmp_path_factory):
    dst = tmp_path_factory.mktemp("emb") / "rclip"
    res = embed(RCLIP, dst, str(tiny_clip.cfg), str(tiny_clip.ckpt), device="cpu", batch_size=5)
    return dst, res


@needs_rclip
def test_every_format_embeds_and_bad_files_are_recorded(rclip_run, tiny_clip):
    dst, res = rclip_run
    totals = res.manifest["outputs"]["embed"]
    assert totals["items"] == 24 and totals["embedded"] == 22 and totals["status_not_an_image"] == 2
    failed = pl.read_parquet(dst / "failed" / "failed_0.parquet")
    assert sorted(failed["key"].to_list()) == ["LICENSE", "not-an-image"]
    assert all("not an image" in e for e in failed["error"].to_list())
    c = workbench.open_collection(dst)
    meta = c.metadata.collect()
    assert len(c) == 22 and set(meta["status"].to_list()) == {"success"}
    assert {"duck", "kookaburras", "magpie", "parrot-and-flowers", "chess-knight", "chess-pawns", "tree",
            "bee_animated"} <= set(meta["key"].to_list())  # jp2, pnm, pbm, pgm, tiff, bmp, webp, gif
    assert all(p.startswith(str(RCLIP)) for p in meta["image_path"].to_list())  # each image's path is kept
    assert verify(dst).ok and res.manifest["model"]["dim"] == 32 and c.dtype == "float16"


@needs_rclip
def test_embeddings_are_the_models_unit_rows(rclip_run, tiny_clip):
    dst, _ = rclip_run
    c = workbench.open_collection(dst)
    meta = c.metadata.collect()
    enc = load_encoder(tiny_clip.cfg, tiny_clip.ckpt, device="cpu")
    img = np.asarray(c.embeddings(0, "image"), np.float32)
    txt = np.asarray(c.embeddings(0, "text"), np.float32)
    want_img = enc.encode_image_files(meta["image_path"].to_list())
    want_txt = enc.encode_text(meta["caption"].to_list())
    assert np.allclose(img, want_img, atol=2e-3) and np.allclose(txt, want_txt, atol=2e-3)
    assert np.allclose(np.linalg.norm(img, axis=1), 1, atol=2e-3)
    assert np.allclose(meta["similarity"].to_numpy(), np.einsum("ij,ij->i", want_img, want_txt), atol=2e-3)


@needs_rclip
def test_truncated_images_and_keep_failed(tiny_clip, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    data = (RCLIP / "cat.jpg").read_bytes()
    (src / "good.jpg").write_bytes(data)
    (src / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (src / "empty.png").write_bytes(b"")
    res = embed(src, tmp_path / "out", str(tiny_clip.cfg), str(tiny_clip.ckpt), device="cpu", keep_failed=True)
    c = workbench.open_collection(tmp_path / "out")
    meta = c.metadata.collect()
    assert meta["key"].to_list() == ["empty", "good", "truncated"]
    assert meta["status"].to_list() == ["not_an_image", "success", "not_an_image"]
    img = np.asarray(c.embeddings(0, "image"), np.float32)
    assert np.all(img[[0, 2]] == 0) and abs(np.linalg.norm(img[1]) - 1) < 2e-3
    assert meta["similarity"].is_nan().to_list() == [True, False, True]
    assert "truncated" in meta["error"][2] or "cannot decode" in meta["error"][2]
    assert res.manifest["outputs"]["embed"]["written_rows"] == 3


def test_webdataset_input_keeps_keys_urls_and_captions(tiny_clip, tmp_path):
    root = make_webdataset(tmp_path / "wds", per_shard=(3, 2))
    embed(root, tmp_path / "out", str(tiny_clip.cfg), str(tiny_clip.ckpt), device="cpu", rows_per_shard=3)
    c = workbench.open_collection(tmp_path / "out")
    meta = c.metadata.collect()
    assert len(c.shards) == 2 and meta["key"].to_list()[:2] == ["000000001", "000000002"]
    assert meta["url"][0] == "https://synthetic.invalid/wds/000000001.jpg"
    assert meta["caption"][0] == "web caption <b>000000001</b>" and meta["member"][0] == "000000001.jpg"


@needs_rclip
def test_resumes_per_shard_and_is_the_same_whatever_the_workers(tiny_clip, tmp_path):
    args = (RCLIP, str(tiny_clip.cfg), str(tiny_clip.ckpt))
    kw = {"device": "cpu", "rows_per_shard": 8, "batch_size": 4}
    with pytest.raises(KeyboardInterrupt):
        embed(args[0], tmp_path / "out", *args[1:], engine=stop_after(2), **kw)
    first = tmp_path / "out" / "img_emb" / "img_emb_0.npy"
    stamp = first.stat().st_mtime_ns
    assert not (tmp_path / "out" / "manifest.json").exists()
    res = embed(args[0], tmp_path / "out", *args[1:], **kw)
    assert res.run["resumed"] == 2 and res.run["done_now"] == 1 and first.stat().st_mtime_ns == stamp
    embed(args[0], tmp_path / "fresh", *args[1:], decode_workers=0, **kw)
    with LocalEngine(2) as engine:
        embed(args[0], tmp_path / "pool", *args[1:], engine=engine, **kw)
    assert _files(tmp_path / "out") == _files(tmp_path / "fresh")  # resumed == uninterrupted, byte for byte
    # a pool worker runs torch on fewer threads: float sums may round differently in the last bit
    pool, out = workbench.open_collection(tmp_path / "pool"), workbench.open_collection(tmp_path / "out")
    assert _files(tmp_path / "pool").keys() == _files(tmp_path / "out").keys()
    for i in range(len(out.shards)):
        for kind in ("image", "text"):
            assert np.allclose(np.asarray(pool.embeddings(i, kind), np.float32),
                               np.asarray(out.embeddings(i, kind), np.float32), atol=1e-3)
    a, b = pool.metadata.collect(), out.metadata.collect()
    assert a.drop("similarity").equals(b.drop("similarity"))
    assert np.allclose(a["similarity"].to_numpy(), b["similarity"].to_numpy(), atol=1e-3)
    assert verify(tmp_path / "out").ok
    assert embed(args[0], tmp_path / "out", *args[1:], **kw).run["already_complete"]


@needs_rclip
def test_cli_embed(tiny_clip, tmp_path):
    p = subprocess.run([sys.executable, "-m", "workbench", "embed", str(RCLIP), str(tmp_path / "out"),
                        "--model", str(tiny_clip.cfg), "--pretrained", str(tiny_clip.ckpt), "--device", "cpu",
                        "--batch-size", "8", "--json"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["items"] == 24 and out["embedded"] == 22 and out["failed"] == {"not_an_image": 2}
    assert out["rows"] == 22 and out["dim"] == 32 and out["model"]["checkpoint_sha256"]
    p = subprocess.run([sys.executable, "-m", "workbench", "embed", str(RCLIP), str(tmp_path / "out2"),
                        "--model", str(tiny_clip.cfg), "--pretrained", str(tiny_clip.ckpt), "--device", "cpu"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and "embedded 22 of 24 images" in p.stdout and "not_an_image 2" in p.stdout
    p = subprocess.run([sys.executable, "-m", "workbench", "embed", str(RCLIP), str(RCLIP / "inside"),
                        "--model", str(tiny_clip.cfg), "--pretrained", str(tiny_clip.ckpt)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and "source" in p.stderr
    p = subprocess.run([sys.executable, "-m", "workbench", "embed", str(RCLIP), str(tmp_path / "o3"),
                        "--model", "ViT-B-32", "--pretrained", str(tiny_clip.ckpt)], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 2 and "tiny.pt" in p.stderr and not (tmp_path / "o3" / "manifest.json").exists()


@needs_rclip
def test_tensor_decode_path_matches_the_pil_path(tiny_clip, tmp_path):
    """The path CUDA takes (JPEGs decoded by torchvision, transforms as tensor ops), run on the CPU."""
    src = tmp_path / "src"
    src.mkdir()
    for p in sorted(RCLIP.glob("*.jpg"))[:4] + [RCLIP / "boats on a lake.png", RCLIP / "not-an-image.txt"]:
        (src / p.name).write_bytes(p.read_bytes())
    data = (RCLIP / "cat.jpg").read_bytes()
    (src / "zz_truncated.jpg").write_bytes(data[:200])
    pil = embed(src, tmp_path / "pil", str(tiny_clip.cfg), str(tiny_clip.ckpt), device="cpu", gpu_decode=False)
    ten = embed(src, tmp_path / "tensor", str(tiny_clip.cfg), str(tiny_clip.ckpt), device="cpu", gpu_decode=True,
                decode_workers=0)
    a, b = workbench.open_collection(tmp_path / "pil"), workbench.open_collection(tmp_path / "tensor")
    ma, mb = a.metadata.collect(), b.metadata.collect()
    assert ma["key"].to_list() == mb["key"].to_list() and len(ma) == 5
    assert ma.select("width", "height", "status").equals(mb.select("width", "height", "status"))
    x, y = (np.asarray(c.embeddings(0, "image"), np.float32) for c in (a, b))
    assert np.all(np.einsum("ij,ij->i", x, y) > 0.98)  # resampling differs a little from PIL's
    jpeg = np.array([p.endswith((".jpg", ".JPG")) for p in ma["image_path"].to_list()])
    assert np.array_equal(x[~jpeg], y[~jpeg])  # the PNG took the PIL path in both runs
    pil_counts, ten_counts = pil.manifest["outputs"]["embed"], ten.manifest["outputs"]["embed"]
    assert pil_counts["device_decoded"] == 0 and ten_counts["device_decoded"] == 4  # the JPEGs took the tensor path
    assert {**pil_counts, "device_decoded": 4} == ten_counts
    failed = pl.read_parquet(tmp_path / "tensor" / "failed" / "failed_0.parquet")
    assert sorted(failed["key"].to_list()) == ["not-an-image", "zz_truncated"]


def test_text_tower_trims_padding_with_the_same_output(tiny_clip):
    from workbench.export.embed import _TextTower

    enc = load_encoder(tiny_clip.cfg, tiny_clip.ckpt, device="cpu")
    tower = _TextTower(enc)
    assert tower.ok
    first = enc.tokenizer(["a cat", "a black cat sleeping on a chair"])
    tower(first, "auto")  # the first batch is checked against the full encode_text
    assert tower.ok and tower.checked
    tokens = enc.tokenizer(["a dog", "boats", "a very long caption " * 10])
    trimmed = tower._trimmed(tokens)
    assert int(tokens.argmax(dim=-1).max()) + 1 == 16  # the long caption fills the context here
    short = enc.tokenizer(["a dog", "boats"])
    assert np.allclose(tower(short, "auto"), enc.encode_text(["a dog", "boats"]), atol=1e-5)
    assert trimmed.shape == (3, 32)


@needs_rclip
def test_embed_on_a_ray_cluster(ray_head, tiny_clip, tmp_path):
    from workbench.engine import RayEngine

    kw = {"device": "cpu", "rows_per_shard": 12, "batch_size": 6}
    embed(RCLIP, tmp_path / "local", str(tiny_clip.cfg), str(tiny_clip.ckpt), **kw)
    with RayEngine(address=ray_head) as engine:
        res = embed(RCLIP, tmp_path / "ray", str(tiny_clip.cfg), str(tiny_clip.ckpt), engine=engine, **kw)
    assert res.run["parts"] == 2 and verify(tmp_path / "ray").ok
    a, b = workbench.open_collection(tmp_path / "local"), workbench.open_collection(tmp_path / "ray")
    assert a.metadata.collect().drop("similarity").equals(b.metadata.collect().drop("similarity"))
    for i in range(len(a.shards)):
        assert np.allclose(np.asarray(a.embeddings(i), np.float32), np.asarray(b.embeddings(i), np.float32), atol=1e-3)


@needs_rclip
def test_a_table_source_may_have_its_output_beside_it(tiny_clip, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"image_path": [str(RCLIP / "cat.jpg"), str(RCLIP / "tree.webp")],
                             "caption": ["a cat", "a tree"]}), tmp_path / "list.parquet")
    res = embed(tmp_path / "list.parquet", tmp_path / "emb", str(tiny_clip.cfg), str(tiny_clip.ckpt), device="cpu")
    assert res.manifest["rows"] == 2
    meta = workbench.open_collection(tmp_path / "emb").metadata.collect()
    assert meta["caption"].to_list() == ["a cat", "a tree"] and meta["key"].to_list() == ["000000000", "000000001"]
