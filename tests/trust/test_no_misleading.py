"""Issue 14, part 2: no result that misleads. Each point reproduced as a user would meet it (the CLI,
in-process or through a real pipe) and shown fixed."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from badinput import refused, run_cli
from conftest import IMAGES, make_datacomp, make_embeddings, make_webdataset, needs_shared, stop_after

import workbench
from workbench.cli.main import REMOVED, main

needs_rclip = needs_shared("images/rclip")

REPO = Path(__file__).resolve().parents[2]


def _recipe(tmp_path, rules: str, name="r.yaml") -> Path:
    p = tmp_path / name
    p.write_text("name: mine\nrules:\n" + rules)
    return p


def _warnings(err: str) -> list[str]:
    return [x[len("warning: "):] for x in err.splitlines() if x.startswith("warning: ")]


# -- a recipe that keeps 0 rows; warnings ------------------------------------------------------------
def test_apply_refuses_to_export_nothing_and_dry_run_warns(demo_world, tmp_path):
    scaled = _recipe(tmp_path, "  - {column: similarity, min: 30}\n")  # 0.30 written as a percentage
    dst = tmp_path / "subset"
    refused(["apply", scaled, demo_world, dst], names=["keeps no rows", "nothing to export", demo_world],
            sources=[demo_world], dst=dst)
    refused(["apply", scaled, demo_world, "--out", dst, "--format", "laion,img2dataset", "--json"],
            names=["nothing to export"], sources=[demo_world], dst=dst)

    rc, out, err = run_cli(["apply", scaled, demo_world, "--dry-run"])
    assert rc == 0 and "0 of 6,000 rows kept" in out
    (w,) = _warnings(err)
    assert "similarity >= 30" in w and "outside every value of similarity" in w and "removes every row" in w
    rc, out, err = run_cli(["apply", scaled, demo_world, "--dry-run", "--json"])
    d = json.loads(out)
    assert rc == 0 and d["kept"] == 0 and d["warnings"] == [w] and _warnings(err) == [w]

    # a threshold outside on the keeping side does nothing; a rule without threshold removes all
    odd = _recipe(tmp_path, "  - {column: similarity, max: 30}\n  - {caption_length: {min_chars: 100000}}\n", "o.yaml")
    rc, out, err = run_cli(["apply", odd, demo_world, "--dry-run", "--json"])
    ws = json.loads(out)["warnings"]
    assert rc == 0 and len(ws) == 2 and ws == _warnings(err)
    assert "similarity <= 30" in ws[0] and "removes no row that has a value" in ws[0]
    assert "caption length" in ws[1].lower() or "caption" in ws[1]
    assert ws[1].endswith("removes every row (6,000 of 6,000)")

    # an ordinary recipe: no warning, an empty list in the JSON
    rc, out, err = run_cli(["apply", "laion2b-en", demo_world, "--dry-run", "--json"])
    assert rc == 0 and json.loads(out)["warnings"] == [] and "warning" not in err

    # the notebook shows the same warnings (one library function) and refuses the same export
    from workbench.curation.workspace import Workspace

    space = Workspace(demo_world, str(odd))
    assert space.warnings() == ws
    space = Workspace(demo_world, str(scaled))
    assert space.warnings() == [w]
    with pytest.raises(workbench.WorkbenchError, match="nothing to export"):
        space.export(tmp_path / "nb")
    assert not (tmp_path / "nb").exists()
    from widgets.filters import counts_html

    assert "outside every value of similarity" in counts_html(space.counts(), space.warnings())


# -- an export never opens as its removed rows --------------------------------------------------------
def test_sidecars_are_never_taken_for_data(demo_world, tmp_path):
    out = tmp_path / "out"
    rc, text, err = run_cli(["apply", "laion2b-en", demo_world, out, "--format", "laion,img2dataset", "--json"])
    d = json.loads(text)
    assert rc == 0, err
    assert REMOVED == "sidecars/removed.parquet" and d["removed_rows_file"] == str(out / "sidecars" / "removed.parquet")
    assert not list(out.glob("*.parquet"))  # nothing beside the data that detection could read
    removed = pl.read_parquet(out / REMOVED)
    assert removed.height == d["removed"] and removed.height + d["kept"] == 6000
    rc, text, _ = run_cli(["info", out, "--json"])
    assert rc == 0 and json.loads(text)["rows"] == d["kept"] and json.loads(text)["layout"] == "embeddings"
    assert main(["verify", str(out)]) == 0

    # a datacomp-only export: a uid list, and info says so instead of showing the removed rows
    pool = make_datacomp(tmp_path / "pool", rows=(4, 6), models=("b32",))
    dco = tmp_path / "dco"
    rows = tmp_path / "rows.parquet"
    pl.DataFrame({"row": [1, 5, 7]}).write_parquet(rows)
    assert run_cli(["export", pool, dco, "--rows", rows, "--format", "datacomp"])[0] == 0
    assert pl.read_parquet(dco / REMOVED).height == 7
    refused(["info", dco], names=[dco, "not a collection: a uid list", "3 uids"], dst=dco)
    assert main(["verify", str(dco)]) == 0

    # webdataset only: the tars' samples; img2dataset only: the url lists
    wds = make_webdataset(tmp_path / "wds", per_shard=(3, 2))
    pl.DataFrame({"row": [0, 2, 4]}).write_parquet(rows)
    for fmt, layout in (("webdataset", "webdataset"), ("img2dataset", "parquet")):
        dst = tmp_path / f"only-{fmt}"
        assert run_cli(["export", wds, dst, "--rows", rows, "--format", fmt])[0] == 0
        rc, text, err = run_cli(["info", dst, "--json"])
        info = json.loads(text)
        assert rc == 0 and info["rows"] == 3 and info["layout"] == layout, err
        assert "reason" not in info["columns"]
        assert main(["verify", str(dst)]) == 0

    # an export of 0 rows (the library still writes one): not a collection, said plainly
    from workbench.export.exporter import REMOVED_ROWS, export

    src = workbench.open_collection(make_embeddings(tmp_path / "emb", rows=(5, 7)))
    export(src, tmp_path / "zero", [], extras={REMOVED_ROWS: lambda p: pl.DataFrame({"row": range(12)}).write_parquet(p)})
    refused(["info", tmp_path / "zero"], names=["not a collection", "0 rows"], dst=tmp_path / "zero")


def test_resume_with_sidecars(tmp_path):
    from workbench.export.exporter import REMOVED_ROWS, export
    from workbench.io.verify import verify

    src = workbench.open_collection(make_embeddings(tmp_path / "src", rows=(20, 20)))
    mask = np.zeros(40, bool)
    mask[::3] = True
    extras = {REMOVED_ROWS: lambda p: pl.DataFrame({"row": np.nonzero(~mask)[0]}).write_parquet(p)}
    with pytest.raises(KeyboardInterrupt):
        export(src, tmp_path / "out", mask, rows_per_shard=4, engine=stop_after(1), extras=extras)
    res = export(src, tmp_path / "out", mask, rows_per_shard=4, extras=extras)
    assert res.run["resumed"] == 1 and verify(tmp_path / "out").ok
    assert len(workbench.open_collection(tmp_path / "out")) == mask.sum()
    assert pl.read_parquet(tmp_path / "out" / REMOVED_ROWS).height == 40 - mask.sum()
    assert export(src, tmp_path / "out", mask, rows_per_shard=4, extras=extras).run["already_complete"]


# -- embed without weights --------------------------------------------------------------------------
@needs_rclip
def test_embed_refuses_random_weights_unless_asked(tiny_clip, tmp_path):
    from workbench.export.embed import embed

    src = tmp_path / "photos"
    src.mkdir()
    for name in ("cat.jpg", "tree.webp"):
        (src / name).write_bytes((IMAGES / "rclip" / name).read_bytes())
    dst = tmp_path / "emb"
    refused(["embed", src, dst, "--model", tiny_clip.cfg, "--device", "cpu"],
            names=[str(tiny_clip.cfg), "--pretrained", "--random-weights"], sources=[src], dst=dst)
    refused(["embed", src, dst, "--model", tiny_clip.cfg, "--pretrained", tiny_clip.ckpt, "--random-weights"],
            names=[str(tiny_clip.cfg)], sources=[src], dst=dst)
    with pytest.raises(workbench.WorkbenchError, match="has no weights given"):
        embed(src, dst, str(tiny_clip.cfg), device="cpu")
    assert not dst.exists()

    rc, out, err = run_cli(["embed", src, dst, "--model", tiny_clip.cfg, "--random-weights", "--device", "cpu", "--json"])
    assert rc == 0, err
    assert json.loads(out)["random_weights"] is True and "random weights" in err
    assert json.loads((dst / "manifest.json").read_text())["random_weights"] is True
    res = embed(src, tmp_path / "real", str(tiny_clip.cfg), str(tiny_clip.ckpt), device="cpu")
    assert res.manifest["random_weights"] is False


# -- export --rows writes the removed rows ------------------------------------------------------------
def test_export_rows_writes_removed_rows(tmp_path):
    src = make_embeddings(tmp_path / "src", rows=(5, 7, 3))
    rows = tmp_path / "picks.parquet"
    pl.DataFrame({"row": [8, 1, 2]}).write_parquet(rows)
    rc, out, err = run_cli(["export", src, tmp_path / "out", "--rows", rows, "--json"])
    assert rc == 0, err
    assert json.loads(out)["removed_rows_file"] == str(tmp_path / "out" / REMOVED)
    removed = pl.read_parquet(tmp_path / "out" / REMOVED)
    assert removed["row"].to_list() == [r for r in range(15) if r not in (1, 2, 8)]
    assert set(removed["reason"]) == {"not in rows file"}
    assert main(["verify", str(tmp_path / "out")]) == 0
    # with counts: a row listed with count 0 is not written either, and says why
    pl.DataFrame({"row": [3, 4], "count": [2, 0]}).write_parquet(rows)
    assert run_cli(["export", src, tmp_path / "c", "--rows", rows])[0] == 0
    removed = pl.read_parquet(tmp_path / "c" / REMOVED)
    assert removed.height == 14 and removed.filter(pl.col("row") == 4)["reason"].to_list() == ["count 0 in rows file"]
    # nothing to write: refused like apply's empty recipe
    pl.DataFrame({"row": [3], "count": [0]}).write_parquet(rows)
    refused(["export", src, tmp_path / "e", "--rows", rows], names=[rows, "nothing to export"], sources=[src],
            dst=tmp_path / "e")


# -- verify: stray files in the root too ----------------------------------------------------------------
def test_verify_flags_stray_files_in_the_root(tmp_path):
    src = make_embeddings(tmp_path / "src", rows=(5, 7))
    out = tmp_path / "out"
    pl.DataFrame({"row": [1, 2]}).write_parquet(tmp_path / "rows.parquet")
    assert run_cli(["export", src, out, "--rows", tmp_path / "rows.parquet"])[0] == 0
    assert run_cli(["score", out, "--similarity"])[0] == 0  # a score cache beside it: not part of the export
    assert (out / ".workbench").is_dir()
    (out / ".staging").mkdir()
    (out / ".staging" / "lock").write_text("1\n")  # the write protocol's lock file, if one lingers
    rc, text, _ = run_cli(["verify", out])
    assert rc == 0, text
    (out / ".staging" / "lock").unlink()
    (out / ".staging").rmdir()
    (out / "extra.parquet").write_bytes((out / REMOVED).read_bytes())  # would be read as data
    (out / "sidecars" / "notes.txt").write_text("x")
    rc, text, _ = run_cli(["verify", out, "--json"])
    problems = json.loads(text)["problems"]
    assert rc == 1 and len(problems) == 2
    assert any("extra.parquet: not in the manifest" in p for p in problems)
    assert any("notes.txt: not in the manifest" in p for p in problems)


# -- a closed pipe ------------------------------------------------------------------------------------
def _cli(*args) -> list[str]:
    return [sys.executable, "-m", "workbench", *map(str, args)]


def test_a_closed_pipe_is_not_an_error(demo_world):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # the reader is gone before anything is written: `workbench ... | head -0`
    for args in (("apply", "laion2b-en", demo_world, "--dry-run"), ("info", "--help")):
        p = subprocess.Popen(_cli(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        p.stdout.close()
        err = p.stderr.read().decode()
        assert p.wait(timeout=120) == 0 and err == "", (args, err)
    # more output than a pipe holds, read by `head -1`
    cmd = " ".join(f"'{a}'" for a in _cli("neighbors", demo_world, "--row", "0", "-k", "3000"))
    p = subprocess.run(["bash", "-c", cmd + ' | head -1; echo "rc=${PIPESTATUS[0]}" >&2'], capture_output=True,
                       text=True, env=env, timeout=120)
    assert len(p.stdout.splitlines()) == 1 and p.stderr == "rc=0\n", p.stderr


# -- --version ---------------------------------------------------------------------------------------
def test_version(capsys, monkeypatch):
    from importlib.metadata import version

    import importlib

    cli = importlib.import_module("workbench.cli.main")  # the module (workbench.cli.main the attribute is the function)

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out == f"workbench {version('laion-workbench')}\n"

    def gone(name):
        raise ModuleNotFoundError(name)

    monkeypatch.setattr("importlib.metadata.version", gone)
    assert cli._version() == workbench.__version__
