import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import make_datacomp, make_embeddings, make_parquet_only, make_webdataset, needs_shared
from workbench.cli.main import main

needs_heads = needs_shared("heads")


def run(*args):
    p = subprocess.run([sys.executable, "-m", "workbench", *map(str, args)], capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout, p.stderr


@pytest.mark.parametrize("maker,layout,rows,dim", [
    (make_embeddings, "embeddings", 15, 16),
    (make_parquet_only, "parquet", 10, None),
    (make_datacomp, "datacomp", 10, 768),
    (make_webdataset, "webdataset", 5, None),
])
def test_info_json_contract(tmp_path, capsys, maker, layout, rows, dim):
    root = maker(tmp_path / "c")
    assert main(["info", str(root), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["layout"] == layout and info["rows"] == rows and info["dim"] == dim
    assert info["shards"] >= 1 and "row" in info["columns"] and "caption" in info["columns"]


def test_info_human(emb_dir, capsys):
    assert main(["info", str(emb_dir)]) == 0
    out = capsys.readouterr().out
    assert "layout   embeddings" in out and "rows     15" in out and "caption<-TEXT" in out


def test_bad_collection_one_line_no_traceback(tmp_path):
    root = make_embeddings(tmp_path / "c")
    p = root / "img_emb" / "img_emb_1.npy"
    p.write_bytes(p.read_bytes()[:-10])
    code, out, err = run("info", root, "--json")
    assert code == 2 and out == ""
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "img_emb_1.npy" in err and "truncated" in err
    code, _, err = run("info", tmp_path / "missing")
    assert code == 2 and "no such file" in err and "Traceback" not in err


def test_info_does_not_import_torch(emb_dir):
    code = (
        "import sys, json, io, contextlib\n"
        "from workbench.cli.main import main\n"
        f"assert main(['info', {str(emb_dir)!r}, '--json']) == 0\n"
        "heavy = [m for m in ('torch', 'open_clip', 'faiss', 'umap', 'sklearn') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr


def test_verify_exit_codes(tmp_path, emb_dir, capsys):
    import workbench
    from workbench.export.exporter import write_subset

    write_subset(workbench.open_collection(emb_dir), tmp_path / "out")
    assert main(["verify", str(tmp_path / "out")]) == 0
    assert "OK: 3 files checked" in capsys.readouterr().out
    p = tmp_path / "out" / "metadata" / "metadata_0.parquet"
    data = bytearray(p.read_bytes())
    data[10] ^= 0xFF
    p.write_bytes(bytes(data))
    assert main(["verify", str(tmp_path / "out"), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and "metadata_0.parquet" in report["problems"][0]
    assert main(["verify", str(emb_dir)]) == 2  # no manifest: an error, not a pass


def test_validate_exit_codes(tmp_path, emb_dir, capsys):
    assert main(["validate", str(emb_dir)]) == 0
    root = make_embeddings(tmp_path / "bad", text=False)
    arr = np.load(root / "img_emb" / "img_emb_0.npy")
    arr[3] = np.nan
    np.save(root / "img_emb" / "img_emb_0.npy", arr)
    capsys.readouterr()
    assert main(["validate", str(root), "--json"]) == 1
    rep = json.loads(capsys.readouterr().out)["image"]
    assert rep["bad_rows"] == 1 and rep["problems"][0]["row"] == 3
    assert main(["validate", str(make_parquet_only(tmp_path / "p"))]) == 2


def test_demo_command_builds_opens_and_summarises(tmp_path):
    out = tmp_path / "world"
    code, stdout, err = run("demo", "--out", out, "--rows", 3000, "--quiet")
    assert code == 0, err
    assert "SYNTHETIC" in stdout and "rows     3,000" in stdout and "layout   embeddings" in stdout
    assert "synthetic similarity" in stdout and "synthetic punsafe" in stdout
    assert main(["verify", str(out)]) == 0
    # a second run reuses the world; a different size into the same folder is refused
    code, stdout2, _ = run("demo", "--out", out, "--rows", 3000, "--quiet")
    assert code == 0 and "rows     3,000" in stdout2
    code, _, err = run("demo", "--out", out, "--rows", 4000, "--quiet")
    assert code == 2 and str(out) in err and "Traceback" not in err


def test_pickled_shard_refused_by_info_without_running_code(tmp_path):
    class Exploit:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    root = make_embeddings(tmp_path / "c")
    np.save(root / "img_emb" / "img_emb_1.npy", np.array([Exploit()], dtype=object), allow_pickle=True)
    code, out, err = run("info", root)
    assert code == 2 and "img_emb_1.npy" in err and "pickle" in err and "Traceback" not in err
    assert not (tmp_path / "pwned").exists()


# -- apply, score, neighbors, index ------------------------------------------------------------------
@needs_heads
def test_apply_dry_run_json_contract(demo_world, tmp_path):
    rc, out, err = run("apply", "laion2b-en", demo_world, "--dry-run", "--json")
    assert rc == 0, err
    d = json.loads(out)
    assert d["rows"] == 6000 and d["kept"] + d["removed"] == 6000 and len(d["rules"]) == 3
    assert sum(r["removed_in_order"] for r in d["rules"]) == d["removed"]
    assert all({"rule", "removed_alone", "removed_in_order", "remaining"} <= set(r) for r in d["rules"])
    # a recipe file with score rules, and the reasons of every removed row
    (tmp_path / "r.yaml").write_text("name: mine\nrules:\n  - {prompt: a watermark, max: 0.2}\n"
                                     "  - {head: nsfw-b32, below: 0.5}\n  - {column: similarity, min: 0.25}\n")
    rc, out, err = run("apply", tmp_path / "r.yaml", demo_world, "--dry-run", "--json", "--reasons", tmp_path / "why.parquet")
    assert rc == 0, err
    d = json.loads(out)
    import polars as pl

    why = pl.read_parquet(tmp_path / "why.parquet")
    assert why.height == d["removed"] and set(why["reason"]) <= {r["rule"] for r in d["rules"]}
    assert d["scores"]["head_nsfw-b32"]["computed"] == 3
    rc, out, _ = run("apply", tmp_path / "r.yaml", demo_world, "--dry-run", "--json")
    assert json.loads(out)["scores"]["head_nsfw-b32"]["cached"] == 3 and json.loads(out)["kept"] == d["kept"]


def test_apply_writes_the_selection(demo_world, tmp_path, capsys):
    assert main(["apply", "laion2b-en", str(demo_world), str(tmp_path / "out")]) == 0  # the contract: RECIPE SRC DST
    assert "rows kept" in capsys.readouterr().out
    import workbench

    out = workbench.open_collection(tmp_path / "out")
    assert main(["apply", "laion2b-en", str(demo_world), "--dry-run", "--json"]) == 0
    assert len(out) == json.loads(capsys.readouterr().out)["kept"]
    assert main(["verify", str(tmp_path / "out")]) == 0
    import polars as pl

    removed = pl.read_parquet(tmp_path / "out" / "sidecars" / "removed.parquet")  # every removed row, with its reason
    assert removed.height + len(out) == 6000 and set(removed.columns) == {"row", "reason"}
    assert "sidecars/removed.parquet" in json.dumps(out.manifest)
    assert main(["apply", "laion2b-en", str(demo_world), "--out", str(tmp_path / "out2")]) == 0
    assert len(workbench.open_collection(tmp_path / "out2")) == len(out)
    assert main(["apply", "laion2b-en", str(demo_world), str(tmp_path / "o3"), "--dry-run"]) == 2


@pytest.mark.parametrize("recipe,message", [
    ("rules:\n  - {column: similarity, mim: 0.3}\n", "unknown setting"),
    ("rules: [ {column: x", "not valid YAML"),
    ("rules:\n  - {colour: red}\n", "a rule names its kind"),
    ("rules:\n  - {column: aesthetic, min: 5}\n", "needs column(s) ['aesthetic']"),
    ("rules:\n  - {prompt: a cat, max: 0.2}\n  - {column: aesthetic, min: 5}\n", "needs column(s) ['aesthetic']"),
    ("rules:\n  - {prompt_embedding: q.npy, min: 0.2}\n", "768-d but the collection's embeddings are 512-d"),
    pytest.param("rules:\n  - {head: aesthetic-v2-l14, min: 5}\n", "768-d embeddings but this collection's are 512-d",
                 marks=needs_heads),
])
def test_bad_recipe_one_line_nonzero(demo_world, tmp_path, recipe, message):
    np.save(tmp_path / "q.npy", np.ones(768, np.float32))
    (tmp_path / "bad.yaml").write_text(recipe)
    rc, out, err = run("apply", tmp_path / "bad.yaml", demo_world, "--dry-run", "--json")
    assert rc == 2 and out == "" and message in err and len(err.strip().splitlines()) == 1, err
    assert not (demo_world / ".workbench").exists()  # refused before any work
    rc, _, err = run("apply", "no-such-preset", demo_world, "--dry-run")
    assert rc == 2 and "not a preset" in err
    rc, _, err = run("apply", "laion2b-en", demo_world)
    assert rc == 2 and "DST" in err


@needs_heads
def test_score_verb(demo_world, tmp_path):
    rc, out, err = run("score", demo_world, "--prompt", "a dog", "--head", "nsfw-b32", "--json", "--out", tmp_path / "s.parquet")
    assert rc == 0, err
    d = json.loads(out)
    assert set(d["columns"]) == {"prompt_0", "head_nsfw-b32"} and d["columns"]["prompt_0"]["nulls"] == 0
    import polars as pl

    assert pl.read_parquet(tmp_path / "s.parquet").height == 6000
    rc, out, err = run("score", demo_world, "--prompt", "a cat", "--json", "--out", tmp_path / "p.parquet")
    assert rc == 0 and "removed_rows_file" not in json.loads(out), err
    rc, out, err = run("score", demo_world, "--prompt", "a cat", "--progress")
    assert rc == 0 and not out.lstrip().startswith("{"), out  # JSON only with --json
    assert "prompt_0" in out and "mean" in out and "6,000 rows" in out and "scoring" in err, (out, err)
    rc, _, err = run("score", demo_world)
    assert rc == 2 and "nothing to score" in err


def test_neighbors_verb(demo_world):
    rc, out, err = run("neighbors", demo_world, "--row", 5, "-k", 4, "--json")
    assert rc == 0, err
    res = json.loads(out)["results"]
    assert len(res) == 4 and 5 not in [r["row"] for r in res]
    assert [r["rank"] for r in res] == [1, 2, 3, 4] and res[0]["score"] >= res[-1]["score"]
    import workbench

    c = workbench.open_collection(demo_world)
    x = c.take_embeddings(np.arange(len(c)))
    s = x @ x[5]
    s[5] = -2
    assert [r["row"] for r in res] == np.argsort(-s, kind="stable")[:4].tolist()
    rc, out, err = run("neighbors", demo_world, "--text", "a dog in the snow", "-k", 3)
    assert rc == 0 and len(out.strip().splitlines()) == 3, err
    rc, _, err = run("neighbors", demo_world, "--row", 1, "--text", "x")
    assert rc == 2 and "exactly one" in err


@pytest.fixture(scope="module")
def tiny_model_world(tmp_path_factory):
    """A collection embedded by a real (tiny, random-weight) open_clip model, saved and loaded by path."""
    import open_clip
    import pyarrow as pa
    import torch

    from conftest import image_files
    from workbench.models.encoders import load_encoder
    from workbench.io.writer import ShardWriter

    d = tmp_path_factory.mktemp("tinyclip")
    cfg = d / "wb-cli-tiny.json"
    cfg.write_text(json.dumps({"embed_dim": 32,
                               "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 16, "head_width": 32},
                               "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}))
    open_clip.add_model_config(cfg)
    for seed, name in ((0, "a.pt"), (1, "b.pt")):
        torch.manual_seed(seed)
        torch.save(open_clip.create_model("wb-cli-tiny").state_dict(), d / name)
    enc = load_encoder(cfg, d / "a.pt", device="cpu")
    photos = image_files()
    caps = [p.stem.replace("_", " ") for p in photos]
    with ShardWriter(d / "coll", rows_per_shard=4, model=enc.identity) as w:
        w.add(enc.encode_images(photos).astype(np.float16), enc.encode_text(caps).astype(np.float16),
              pa.table({"url": [str(p) for p in photos], "caption": caps}))
    return d, cfg, enc, photos


def test_real_model_neighbors_and_prompts(tiny_model_world, tmp_path):
    d, cfg, enc, photos = tiny_model_world
    coll = d / "coll"
    rc, out, err = run("neighbors", coll, "--image", photos[2], "--model", cfg, "--pretrained", d / "a.pt", "-k", 2, "--json")
    assert rc == 0, err
    res = json.loads(out)["results"]
    assert res[0]["row"] == 2 and res[0]["score"] > 0.999  # the image itself, embedded again
    rc, out, err = run("neighbors", coll, "--text", "a cat", "--model", cfg, "--pretrained", d / "a.pt", "-k", 3, "--json")
    assert rc == 0, err
    import workbench

    c = workbench.open_collection(coll)
    ref = c.take_embeddings(np.arange(len(c))) @ enc.encode_text(["a cat"])[0]
    assert [r["row"] for r in json.loads(out)["results"]] == np.argsort(-ref, kind="stable")[:3].tolist()
    srt = np.sort(ref)
    cut = float((srt[3] + srt[4]) / 2)  # halfway between two rows: no float rounding can flip a row
    (tmp_path / "r.yaml").write_text("rules:\n  - {prompt: a cat, max: %r}\n" % cut)
    rc, out, err = run("apply", tmp_path / "r.yaml", coll, "--dry-run", "--json", "--model", cfg, "--pretrained", d / "a.pt")
    assert rc == 0, err
    assert json.loads(out)["kept"] == 4
    # another checkpoint of the same architecture is another model: refused before any work
    rc, out, err = run("apply", tmp_path / "r.yaml", coll, "--dry-run", "--model", cfg, "--pretrained", d / "b.pt")
    assert rc == 2 and out == "" and len(err.strip().splitlines()) == 1 and "checkpoint" in err, err
    # without a text tower a text prompt is refused with a hint
    rc, _, err = run("apply", tmp_path / "r.yaml", coll, "--dry-run")
    assert rc == 2 and "--model" in err


def test_map_verb_caches_the_projection(demo_world):
    args = ("map", demo_world, "--sample", 1000, "--n-epochs", 20, "--json")
    rc, out, err = run(*args)
    assert rc == 0, err
    d = json.loads(out)
    assert d["report"]["computed"] == 3 and d["rows"] == 6000
    rc, out, _ = run(*args)
    assert json.loads(out)["report"]["cached"] == 3
    rc, out, _ = run("map", demo_world, "--sample", 1000, "--n-epochs", 20, "--progress-json")
    lines = [json.loads(x) for x in out.splitlines()]
    assert lines[-1]["done"] is True
    rc, _, err = run("map", demo_world, "--sample", 1)
    assert rc == 2 and "sample" in err
    rc, out, err = run("map", demo_world, "--sample", 900, "--n-epochs", 10, "--progress", "--json")
    assert rc == 0 and json.loads(out)["report"]["computed"] == 3, err
    assert "100%" in err and "umap" in err.lower(), err  # a bar per stage on stderr, JSON alone on stdout
    rc, out, err = run("map", demo_world, "--sample", 900, "--n-epochs", 10, "--quiet", "--json")
    assert rc == 0 and "%" not in err, err


def test_index_verb_shows_progress(demo_world, tmp_path):
    rc, out, err = run("index", demo_world, "--out", tmp_path / "i.index", "--factory", "Flat", "--json", "--progress")
    assert rc == 0 and json.loads(out)["rows"] == 6000, err
    assert "adding rows to the index" in err and "6.00k/6.00k" in err, err


# -- apply at scale: faults ---------------------------------------------------------------------------
RECIPE = "name: keep-most\nrules:\n  - {column: similarity, min: 0.22}\n"


def _tree(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "manifest.json"}


def test_apply_after_sigkill_completes_with_the_same_bytes(tmp_path):
    import signal
    import time

    src = make_embeddings(tmp_path / "src", rows=(20_000,) * 6, dim=128)
    (tmp_path / "r.yaml").write_text(RECIPE)
    out = tmp_path / "out"
    args = [sys.executable, "-m", "workbench", "apply", str(tmp_path / "r.yaml"), str(src), str(out),
            "--rows-per-shard", "1500", "--json"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    done = out / ".staging" / "done"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and len(list(done.glob("*.json"))) < 3:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed mid-way"
    assert not (out / "manifest.json").exists()
    finished = len(list(done.glob("*.json")))
    assert finished >= 3
    rc, _, err = run("verify", out)
    assert rc == 2 and "no manifest.json" in err  # an unfinished write never passes for a finished one
    stamp = (out / "img_emb" / "img_emb_0.npy").stat().st_mtime_ns
    rc, stdout, err = run(*args[3:])
    assert rc == 0, err
    res = json.loads(stdout)
    assert res["resumed_parts"] >= finished and res["written_rows"] == res["kept"]
    assert (out / "img_emb" / "img_emb_0.npy").stat().st_mtime_ns == stamp  # not redone
    assert run("verify", out)[0] == 0
    rc, _, err = run(*args[3:5], src, tmp_path / "fresh", *args[7:])
    assert rc == 0, err
    assert _tree(out) == _tree(tmp_path / "fresh")


def test_apply_broken_shard_fails_or_is_skipped_as_chosen(tmp_path):
    src = make_embeddings(tmp_path / "src", rows=(50, 60, 40))
    bad = src / "img_emb" / "img_emb_1.npy"
    bad.write_bytes(bad.read_bytes()[:-500])  # truncated
    (tmp_path / "r.yaml").write_text(RECIPE)
    rc, out, err = run("apply", tmp_path / "r.yaml", src, tmp_path / "o1", "--json")
    assert rc == 2 and "img_emb_1.npy" in err and out == ""
    assert not (tmp_path / "o1").exists()
    rc, out, err = run("apply", tmp_path / "r.yaml", src, tmp_path / "o2", "--json", "--on-error", "skip")
    assert rc == 0, err
    assert "warning: skipped shard 1" in err and "img_emb_1.npy" in err
    res = json.loads(out)
    assert res["rows"] == 90 and [s["shard"] for s in res["skipped_shards"]] == ["1"]
    manifest = json.loads((tmp_path / "o2" / "manifest.json").read_text())
    assert manifest["source"]["skipped_shards"][0]["files"][0].endswith("img_emb_1.npy")
    assert manifest["rows"] == res["kept"]


def test_apply_refuses_bad_destinations_before_any_work(tmp_path, demo_world):
    (tmp_path / "r.yaml").write_text("rules:\n  - {prompt: a dog, max: 0.3}\n")
    rc, _, err = run("apply", tmp_path / "r.yaml", demo_world, demo_world / "subset")
    assert rc == 2 and "refusing to write into the source" in err
    (tmp_path / "file").write_text("x")
    rc, _, err = run("apply", tmp_path / "r.yaml", demo_world, tmp_path / "file" / "below")
    assert rc == 2 and "not writable" in err
    assert not (demo_world / ".workbench").exists()  # no scoring happened


def test_apply_write_failure_leaves_no_partial_file_and_resumes(tmp_path):
    import resource

    src = make_embeddings(tmp_path / "src", rows=(3000, 3000), dim=64)
    (tmp_path / "r.yaml").write_text(RECIPE)
    out = tmp_path / "out"

    def small_files():  # a real write error (EFBIG) past 200 kB in any file, like a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

    p = subprocess.run([sys.executable, "-m", "workbench", "apply", str(tmp_path / "r.yaml"), str(src), str(out),
                        "--rows-per-shard", "2000"], capture_output=True, text=True, timeout=120, preexec_fn=small_files)
    assert p.returncode == 3, p.stderr
    assert "File too large" in p.stderr and "run the same command again to resume" in p.stderr
    assert not (out / "manifest.json").exists()
    finals = [f for d in ("img_emb", "text_emb", "metadata") for f in (out / d).glob("*") if (out / d).is_dir()]
    assert finals == []  # nothing half-written under a final name
    assert not list((out / ".staging" / "tmp").glob("*/**/*.npy"))
    rc, _, err = run("apply", tmp_path / "r.yaml", src, out, "--rows-per-shard", "2000")
    assert rc == 0, err
    assert run("verify", out)[0] == 0


def test_apply_formats_and_workers(tmp_path):
    src = make_webdataset(tmp_path / "wds", per_shard=(3, 4))
    (tmp_path / "all.yaml").write_text("rules: []\n")
    rc, out, err = run("apply", tmp_path / "all.yaml", src, tmp_path / "o", "--format", "laion,webdataset",
                       "--format", "img2dataset", "--samples-per-tar", "4", "--workers", "2", "--json", "--progress")
    assert rc == 0, err
    assert "writing" in err and "100%" in err  # the progress bar (stderr; stdout stays one JSON object)
    res = json.loads(out)
    assert res["formats"] == ["laion", "webdataset", "img2dataset"] and res["engine"]["workers"] == 2
    assert res["outputs"]["webdataset"] == {"parts": 2, "rows": 7, "samples": 7, "no_image": 0,
                                            "image_bytes": res["outputs"]["webdataset"]["image_bytes"]}
    assert sorted(p.name for p in (tmp_path / "o" / "webdataset").glob("*.tar")) == ["00000.tar", "00001.tar"]
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert manifest["parameters"]["recipe_text"] == "rules: []\n"  # the recipe verbatim
    assert run("verify", tmp_path / "o")[0] == 0
    rc, _, err = run("apply", tmp_path / "all.yaml", src, tmp_path / "o3", "--format", "parquet")
    assert rc == 2 and "unknown --format" in err
    rc, out, _ = run("apply", tmp_path / "all.yaml", src, tmp_path / "o", "--format", "laion,webdataset",
                     "--format", "img2dataset", "--samples-per-tar", "4", "--json")
    assert rc == 0 and json.loads(out)["already_complete"]


def test_sample_verb(demo_world, tmp_path):
    import polars as pl

    rc, out, err = run("sample", demo_world, "--by", "similarity", "--method", "soft-cap", "--n", 9000,
                       "--penalty", 0.25, "--seed", 3, "--out", tmp_path / "s.parquet", "--json")
    assert rc == 0, err
    res = json.loads(out)
    got = pl.read_parquet(tmp_path / "s.parquet")
    assert got.columns == ["row", "count"] and got["count"].sum() == 9000 == res["n"]
    assert got["row"].is_sorted() and res["max_count"] > 1 and res["distinct"] == got.height
    rc, _, _ = run("sample", demo_world, "--by", "similarity", "--method", "soft-cap", "--n", 9000,
                   "--penalty", 0.25, "--seed", 3, "--out", tmp_path / "s2.parquet")
    assert rc == 0 and pl.read_parquet(tmp_path / "s2.parquet").equals(got)  # seeded: the same multiset
    rc, out, err = run("sample", demo_world, "--by", "punsafe", "--method", "hard-cap", "--n", 100, "--cap", 2,
                       "--out", tmp_path / "h.parquet", "--json")
    assert rc == 0 and json.loads(out)["max_count"] <= 2, err
    rc, out, err = run("sample", demo_world, "--by", "similarity", "--method", "top", "--n", 10,
                       "--out", tmp_path / "t.parquet", "--json")
    top = pl.read_parquet(tmp_path / "t.parquet")
    import workbench

    sim = workbench.open_collection(demo_world).metadata.select("row", "similarity").collect()
    assert rc == 0 and top["count"].to_list() == [1] * 10
    assert sim.filter(pl.col("row").is_in(top["row"].implode()))["similarity"].min() >= sim.sort("similarity")["similarity"][-10]
    rc, _, err = run("sample", demo_world, "--by", "caption", "--method", "top", "--n", 1, "--out", tmp_path / "x.parquet")
    assert rc == 2 and "not a number" in err
    rc, _, err = run("sample", demo_world, "--by", "nope", "--method", "top", "--n", 1, "--out", tmp_path / "x.parquet")
    assert rc == 2 and "no column 'nope'" in err


def test_pairs_verb(demo_world, tmp_path):
    import polars as pl

    import workbench

    meta = workbench.open_collection(demo_world).metadata.select("key", "caption").collect()
    recs = []
    for r in range(0, 200, 10):
        for w in (r, r + 1, r + 2):
            recs.append({"image": meta["key"][r], "prompt": "what is shown?", "candidate": meta["caption"][w]})
    pl.DataFrame(recs).write_parquet(tmp_path / "cands.parquet")
    rc, out, err = run("pairs", demo_world, tmp_path / "cands.parquet", "--out", tmp_path / "p", "--min-margin", 1,
                       "--max-length", 200, "--json")
    assert rc == 0, err
    res = json.loads(out)
    assert res["candidates"] == 60 and res["pairs"] > 0 and res["rules"]["min_margin"] == 1
    lines = (tmp_path / "p" / "pairs.jsonl").read_text().splitlines()
    assert len(lines) == res["pairs"] and json.loads(lines[0])["prompt"] == "what is shown?"
    rc, _, err = run("pairs", demo_world, tmp_path / "cands.parquet", "--out", tmp_path / "q", "--min-margin", 0)
    assert rc == 2 and "ties never" in err
    rc, _, err = run("pairs", demo_world, tmp_path / "nope.parquet", "--out", tmp_path / "q")
    assert rc == 2 and "nope.parquet" in err


def test_audit_verb(demo_world):
    rc, out, err = run("audit", demo_world, "--term", "woman", "--term", "cat", "--query", "nude", "-k", 20, "--json")
    assert rc == 0, err
    res = json.loads(out)
    assert [t["term"] for t in res["terms"]] == ["woman", "cat"] and res["terms"][0]["rows"] > 0
    assert "tag_NSFW" in res["terms"][0] and "unsafe_share" in res["queries"][0] and res["queries"][0]["k"] == 20
    rc, out, err = run("audit", demo_world, "--term", "woman")
    assert rc == 0 and "'woman':" in out and "not labels" in out
    rc, _, err = run("audit", demo_world)
    assert rc == 2 and "--term" in err


def test_mix_verb(demo_world, tmp_path):
    import polars as pl

    from workbench.demo.build import load_ground_truth

    truth = load_ground_truth(demo_world)
    pl.DataFrame({"row": truth["row"][:500], "label": (~truth["is_unsafe"].cast(pl.Boolean))[:500].cast(pl.Int8)}) \
        .write_parquet(tmp_path / "labels.parquet")
    rc, out, err = run("mix", demo_world, "--column", "similarity,punsafe", "--labels", tmp_path / "labels.parquet",
                       "--out", tmp_path / "mix.parquet", "--json")
    assert rc == 0, err
    res = json.loads(out)
    assert res["weights"]["punsafe"] < 0 and res["cv"]["auc_mean"] > 0.7
    mixed = pl.read_parquet(tmp_path / "mix.parquet")
    assert mixed.columns == ["row", "mix"] and mixed.height == 6000
    pl.DataFrame({"row": [0, 1, 2], "label": [1, 1, 1]}).write_parquet(tmp_path / "onekind.parquet")
    rc, _, err = run("mix", demo_world, "--column", "similarity", "--labels", tmp_path / "onekind.parquet",
                     "--out", tmp_path / "m.parquet")
    assert rc == 2 and "onekind.parquet" in err and "both kinds" in err
    rc, out, err = run("sample", demo_world, "--by", "mix", "--scores", tmp_path / "mix.parquet", "--method", "top",
                       "--n", 100, "--out", tmp_path / "top.parquet", "--json")
    assert rc == 0 and json.loads(out)["n"] == 100, err


def test_sample_a_top_fraction_equals_the_recipe_rule(demo_world, tmp_path):
    import polars as pl

    rc, out, err = run("sample", demo_world, "--by", "similarity", "--method", "top", "--fraction", 0.3,
                       "--out", tmp_path / "top.parquet", "--json")
    assert rc == 0, err
    res = json.loads(out)
    assert res["n"] == 1800 and res["fraction"] == 0.3
    (tmp_path / "r.yaml").write_text("rules:\n  - {top_fraction: 0.3, by: similarity}\n")
    rc, out, err = run("apply", tmp_path / "r.yaml", demo_world, "--dry-run", "--reasons", tmp_path / "gone.parquet")
    assert rc == 0, err
    gone = set(pl.read_parquet(tmp_path / "gone.parquet")["row"].to_list())
    assert set(pl.read_parquet(tmp_path / "top.parquet")["row"].to_list()) == set(range(6000)) - gone
    rc, _, err = run("sample", demo_world, "--by", "similarity", "--method", "top", "--fraction", 1.5,
                     "--out", tmp_path / "x.parquet")
    assert rc == 2 and "--fraction" in err
    rc, _, err = run("sample", demo_world, "--by", "similarity", "--method", "top", "--out", tmp_path / "x.parquet")
    assert rc == 2 and "--n" in err and not (tmp_path / "x.parquet").exists()


def test_mix_verb_from_a_proxy_task(demo_world, tmp_path):
    import polars as pl

    from workbench.demo.build import load_ground_truth

    truth = load_ground_truth(demo_world).filter(pl.col("objects").list.len() == 1)
    truth.select("row", pl.col("objects").list.first().alias("class")).head(400).write_parquet(tmp_path / "held.parquet")
    rc, out, err = run("mix", demo_world, "--column", "similarity,punsafe", "--proxy", tmp_path / "held.parquet",
                       "--steps", 20, "--out", tmp_path / "mix.parquet", "--json", "--progress")
    assert rc == 0, err
    assert "20/20" in err and "FLYT steps" in err, err
    res = json.loads(out)
    assert res["method"] == "proxy" and res["weights"]["similarity"] > 0 and res["bias"] == 0
    assert res["proxy"]["heldout"] == 400 and res["proxy"]["check_loss_mix"] < res["proxy"]["check_loss_uniform"]
    assert pl.read_parquet(tmp_path / "mix.parquet").columns == ["row", "mix"]
    rc, out, err = run("mix", demo_world, "--column", "similarity", "--proxy", tmp_path / "held.parquet",
                       "--steps", 2, "--template", "a {} photo", "--out", tmp_path / "m2.parquet")
    assert rc == 0 and "zero-shot loss" in out and "mix = " in out, err
    rc, _, err = run("mix", demo_world, "--column", "similarity", "--out", tmp_path / "m3.parquet")
    assert rc == 2 and "--labels" in err and "--proxy" in err
    rc, _, err = run("mix", demo_world, "--column", "similarity", "--proxy", tmp_path / "held.parquet",
                     "--template", "no slot", "--out", tmp_path / "m3.parquet")
    assert rc == 2 and "template" in err and not (tmp_path / "m3.parquet").exists()
    pl.DataFrame({"row": [1, 2]}).write_parquet(tmp_path / "noclass.parquet")
    rc, _, err = run("mix", demo_world, "--column", "similarity", "--proxy", tmp_path / "noclass.parquet",
                     "--out", tmp_path / "m3.parquet")
    assert rc == 2 and "noclass.parquet" in err and "class" in err


def test_apply_datacomp_baselines(demo_world):
    kept = {}
    for name in ("datacomp-basic", "workbench-laion2b", "workbench-text-based", "workbench-image-based",
                 "workbench-image-clip-score"):
        rc, out, err = run("apply", name, demo_world, "--dry-run", "--json")
        assert rc == 0, err
        kept[name] = json.loads(out)["kept"]
        assert json.loads(out)["score_models"].get("language") == "fastText lid.176.ftz"
    assert 0 < kept["workbench-image-clip-score"] < kept["workbench-image-based"] < 6000
    assert 0 < kept["workbench-text-based"] < 6000
    # DataComp's exact baselines read DataComp's own score columns: refused on another collection, saying why
    rc, out, err = run("apply", "datacomp-clip-score-b32", demo_world, "--dry-run", "--json")
    assert rc != 0 and "clip_b32_similarity_score" in err and "DataComp pool" in err


def test_export_verb_writes_a_sample(demo_world, tmp_path):
    import polars as pl

    rc, out, err = run("sample", demo_world, "--by", "similarity", "--method", "hard-cap", "--n", 500, "--cap", 3,
                       "--out", tmp_path / "picks.parquet")
    assert rc == 0, err
    rc, out, err = run("export", demo_world, tmp_path / "sub", "--rows", tmp_path / "picks.parquet", "--json")
    assert rc == 0, err
    res = json.loads(out)
    picks = pl.read_parquet(tmp_path / "picks.parquet")
    assert res["written_rows"] == 500 and res["distinct_rows"] == picks.height
    assert run("verify", tmp_path / "sub")[0] == 0
    picks.select("row").write_parquet(tmp_path / "plain.parquet")
    rc, out, err = run("export", demo_world, tmp_path / "sub2", "--rows", tmp_path / "plain.parquet", "--json")
    assert rc == 0 and json.loads(out)["written_rows"] == picks.height, err
    pl.DataFrame({"row": [10**9]}).write_parquet(tmp_path / "bad.parquet")
    rc, _, err = run("export", demo_world, tmp_path / "sub3", "--rows", tmp_path / "bad.parquet")
    assert rc == 2 and "not in the collection" in err
