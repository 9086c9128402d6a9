"""Issue 14, bad input: manifests, recipes, concurrent writers, full disks. One clear line, nothing lost.

Every refusal goes through the shared harness (tests/badinput.py): exit 2 (3 for a write stopped
part-way), one ``error:`` line naming the file and the fault, no traceback, sources unchanged, the
destination absent or as it was.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import workbench
from badinput import refused, run_cli, tree_digest
from conftest import make_embeddings
from workbench.curation.recipe import MAX_RULES, Recipe, evaluate
from workbench.export.exporter import write_subset

REPO = Path(__file__).resolve().parents[2]


# -- verify: malformed manifests and paths that leave the folder --------------------------------------
@pytest.fixture
def written(tmp_path):
    src = workbench.open_collection(make_embeddings(tmp_path / "src"))
    write_subset(src, tmp_path / "out", rows_per_shard=6)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.npy").write_bytes(b"not yours")
    return tmp_path / "out", outside


@pytest.fixture
def no_reads(monkeypatch):
    """Records every listed file verify reads: a refused manifest must read none."""
    import workbench.io.verify as v

    calls = []
    real_sha, real_rows = v.sha256_file, v._rows
    monkeypatch.setattr(v, "sha256_file", lambda p: calls.append(Path(p)) or real_sha(p))
    monkeypatch.setattr(v, "_rows", lambda p: calls.append(Path(p)) or real_rows(p))
    return calls


def _m(edit):
    """A manifest change: edit(manifest dict, outside folder) -> the new manifest (dict) or its text (str/bytes)."""
    return edit


MALFORMED = {
    "not-json": (_m(lambda m, o: "{not json"), ["not valid JSON"]),
    "binary": (_m(lambda m, o: b"\xff\xfe\x00\x01garbage"), ["not valid JSON"]),
    "empty": (_m(lambda m, o: ""), ["not valid JSON"]),
    "a-list": (_m(lambda m, o: [m]), ["not a workbench manifest"]),
    "files-not-a-list": (_m(lambda m, o: {**m, "files": {"path": "x"}}), ["not a workbench manifest"]),
    "files-missing": (_m(lambda m, o: {k: v for k, v in m.items() if k != "files"}), ["not a workbench manifest"]),
    "entry-a-string": (_m(lambda m, o: {**m, "files": ["img_emb/img_emb_0.npy"]}), ["files[0]", "mapping"]),
    "size-a-string": (_m(lambda m, o: {**m, "files": [{**m["files"][0], "bytes": "123"}] + m["files"][1:]}),
                      ["files[0]", "bytes", "'123'"]),
    "size-negative": (_m(lambda m, o: {**m, "files": [{**m["files"][0], "bytes": -1}]}), ["files[0]", "bytes"]),
    "size-bool": (_m(lambda m, o: {**m, "files": [{**m["files"][0], "bytes": True}]}), ["files[0]", "bytes"]),
    "size-nan": (_m(lambda m, o: json.dumps({**m, "files": [{**m["files"][0], "bytes": float("nan")}]})),
                 ["files[0]", "bytes"]),
    "no-sha256": (_m(lambda m, o: {**m, "files": [{k: v for k, v in m["files"][0].items() if k != "sha256"}]}),
                  ["files[0]", "'sha256'"]),
    "sha256-an-int": (_m(lambda m, o: {**m, "files": [{**m["files"][0], "sha256": 7}]}), ["files[0]", "sha256"]),
    "no-path": (_m(lambda m, o: {**m, "files": [{k: v for k, v in m["files"][0].items() if k != "path"}]}),
                ["files[0]", "'path'"]),
    "path-a-number": (_m(lambda m, o: {**m, "files": [{**m["files"][0], "path": 12}]}), ["files[0]", "path"]),
    "rows-a-string": (_m(lambda m, o: {**m, "files": [{**m["files"][0], "rows": "5"}]}), ["files[0]", "rows"]),
    "extra-files-a-dict": (_m(lambda m, o: {**m, "extra_files": {}}), ["extra_files"]),
    "shards-a-string": (_m(lambda m, o: {**m, "shards": "all"}), ["shards"]),
    "shard-rows-a-string": (_m(lambda m, o: {**m, "shards": [{"name": "0", "rows": "x"}]}), ["shards[0]"]),
    "total-rows-a-list": (_m(lambda m, o: {**m, "rows": [15]}), ["rows must be"]),
    "nested-50000-deep": (_m(lambda m, o: "[" * 50_000 + "]" * 50_000), ["not valid JSON"]),
}

ESCAPING = {
    "dotdot": (_m(lambda m, o: {**m, "files": m["files"] + [{**m["files"][0], "path": "../outside/secret.npy"}]}),
               "../outside/secret.npy"),
    "dotdot-inside": (_m(lambda m, o: {**m, "extra_files": [{**m["files"][0], "path": "img_emb/../../outside/secret.npy"}]}),
                      "img_emb/../../outside/secret.npy"),
    "absolute": (_m(lambda m, o: {**m, "files": [{**m["files"][0], "path": str(o / "secret.npy")}] + m["files"][1:]}),
                 "secret.npy"),
    "nul-byte": (_m(lambda m, o: {**m, "files": [{**m["files"][0], "path": "img_emb/x\0.npy"}]}), "files[0]"),
    "the-folder-itself": (_m(lambda m, o: {**m, "files": [{**m["files"][0], "path": "."}]}), "'.'"),
}


def _write_manifest(folder: Path, outside: Path, edit) -> Path:
    path = folder / "manifest.json"
    new = edit(json.loads(path.read_text()), outside)
    if isinstance(new, bytes):
        path.write_bytes(new)
    else:
        path.write_text(new if isinstance(new, str) else json.dumps(new))
    return path


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_manifest(written, no_reads, case):
    folder, outside = written
    edit, names = MALFORMED[case]
    manifest = _write_manifest(folder, outside, edit)
    refused(["verify", folder], names=[manifest, *names], sources=[folder, outside])
    assert no_reads == []


@pytest.mark.parametrize("case", list(ESCAPING))
def test_manifest_path_outside_the_folder(written, no_reads, case):
    folder, outside = written
    edit, bad = ESCAPING[case]
    manifest = _write_manifest(folder, outside, edit)
    refused(["verify", folder], names=[manifest, bad], sources=[folder, outside])
    assert no_reads == []  # nothing read: not the files inside, not the one outside


def test_symlinked_file_that_escapes(written, no_reads):
    folder, outside = written
    f = folder / "img_emb" / "img_emb_1.npy"
    f.unlink()
    f.symlink_to(outside / "secret.npy")
    line = refused(["verify", folder], names=[folder / "manifest.json", "img_emb/img_emb_1.npy", "symlink"],
                   sources=[folder, outside])
    assert str(outside / "secret.npy") in line and no_reads == []


def test_symlinked_folder_that_escapes(written, no_reads, tmp_path):
    folder, outside = written
    moved = tmp_path / "elsewhere"
    (folder / "text_emb").rename(moved)
    (folder / "text_emb").symlink_to(moved, target_is_directory=True)
    refused(["verify", folder], names=[folder / "manifest.json", "text_emb/text_emb_0.npy"], sources=[folder, moved])
    assert no_reads == []


def test_symlinked_manifest_that_escapes(written, no_reads):
    folder, outside = written
    (outside / "manifest.json").write_text((folder / "manifest.json").read_text())
    (folder / "manifest.json").unlink()
    (folder / "manifest.json").symlink_to(outside / "manifest.json")
    refused(["verify", folder], names=[folder / "manifest.json", "the manifest"], sources=[folder, outside])


def test_symlink_inside_the_folder_is_fine(written):
    folder, _ = written
    f = folder / "img_emb" / "img_emb_1.npy"
    real = folder / "img_emb" / "real_1.bin"
    f.rename(real)
    f.symlink_to(real)
    rc, out, err = run_cli(["verify", folder])
    assert rc == 1 and err == "", err  # checked like any file: same bytes; only the unlisted real file is a problem
    assert "real_1.bin: not in the manifest" in out and "img_emb_1.npy" not in out


# -- recipes --------------------------------------------------------------------------------------------
BILLION_LAUGHS = textwrap.dedent("""\
    a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
    b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
    c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
    d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
    e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
    f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
    g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
    h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
    i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
    rules: [{column: similarity, min: 0.1, name: *i}]
    """)

RECIPES = {  # file name -> (text or bytes, strings the error line names)
    "bomb.yaml": (BILLION_LAUGHS, ["alias *a", "single values"]),
    "bomb-in-rules.yaml": ("base: &r {column: similarity, min: 0.2}\nrules: [*r, *r, *r]\n", ["alias *r"]),
    "merge-key.yaml": ("base: &r {column: similarity}\nrules:\n  - {<<: *r, min: 0.2}\n", ["alias *r"]),
    "deep.yaml": ("rules: " + "[" * 200 + "]" * 200 + "\n", ["nested"]),
    "deep.json": ('{"rules": ' + "[" * 100_000 + "]" * 100_000 + "}", ["nested"]),
    "deep-shallow.json": ('{"rules": [{"column": "similarity", "min": 0.1, "x": ' + "[" * 40 + "]" * 40 + "}]}",
                          ["nested more than 16"]),
    "huge.yaml": ("rules: []\n" + "#" * (1 << 20) + "\n", ["1 MiB"]),
    "too-many.json": (json.dumps({"rules": [{"column": "similarity", "min": i / 1e5, "name": f"r{i}"}
                                            for i in range(MAX_RULES + 1)]}), ["10,001 rules", "10,000"]),
    "unknown-key.yaml": ("rulez: []\n", ["rules"]),
    "unknown-top-key.yaml": ("rules: []\nfilters: [1]\n", ["unknown recipe key", "filters"]),
    "unknown-setting.yaml": ("rules: [{column: similarity, min: 0.2, minimum: 0.3}]\n", ["rule 1", "minimum"]),
    "unknown-kind.yaml": ("rules: [{colum: similarity, min: 0.2}]\n", ["rule 1", "colum"]),
    "rules-a-string.yaml": ("rules: similarity\n", ["rules"]),
    "rule-a-number.yaml": ("rules: [5]\n", ["rule 1", "mapping"]),
    "name-a-list.yaml": ("rules: [{column: similarity, min: 0.2, name: [a]}]\n", ["rule 1", "name"]),
    "binary.yaml": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xd8", ["not UTF-8"]),
    "latin1.json": ('{"rules": [], "name": "caf\xe9"}'.encode("latin-1"), ["not UTF-8"]),
    "syntax.yaml": ("rules: [{column: similarity, min: 0.2\n", ["not valid YAML"]),
    "syntax.json": ('{"rules": [}', ["not valid JSON"]),
    "missing-column.yaml": ("rules: [{column: no_such_column, min: 0.2}]\n", ["no_such_column", "lacks", "{src}"]),
    "string-threshold.yaml": ("rules: [{column: similarity, min: '0.2'}]\n", ["rule 1", "finite number", "'0.2'"]),
    "nan-threshold.yaml": ("rules: [{column: similarity, min: .nan}]\n", ["rule 1", "finite number", "nan"]),
    "nan-threshold.json": ('{"rules": [{"column": "similarity", "max": NaN}]}', ["rule 1", "finite number"]),
    "inf-threshold.json": ('{"rules": [{"column": "similarity", "below": Infinity}]}', ["rule 1", "finite number"]),
    "bool-threshold.yaml": ("rules: [{column: similarity, min: true}]\n", ["rule 1", "finite number"]),
    "negative-length.yaml": ("rules: [{caption_length: {min_chars: -1}}]\n", ["rule 1", "min_chars"]),
    "number-keys.yaml": ("rules: [{1: 2, min: 3, foo: 4}]\n", ["rule 1", "first key"]),
    "mixed-in-list.yaml": ("rules: [{column: similarity, in: [a, 1]}]\n", ["rule 1", "one type"]),
    "nested-in-list.yaml": ("rules: [{column: similarity, not_in: [[1]]}]\n", ["rule 1", "one type"]),
    "zero-shot-a-list.yaml": ("rules: [{zero_shot: [laion400m-nsfw]}]\n", ["rule 1", "zero_shot"]),
    "python-tag.yaml": ("rules: !!python/object/apply:os.system ['echo pwned']\n", ["not valid YAML"]),
    "two-documents.yaml": ("rules: []\n---\nrules: []\n", ["not valid YAML"]),
    "duplicate-names.yaml": ("rules: [{column: similarity, min: 0.2}, {column: similarity, min: 0.2}]\n",
                             ["two rules are named"]),
}


@pytest.fixture(scope="module")
def small_src(tmp_path_factory):
    return make_embeddings(tmp_path_factory.mktemp("bad") / "src", rows=(40, 30), dim=16)


@pytest.mark.parametrize("name", list(RECIPES))
def test_bad_recipe(tmp_path, small_src, name):
    text, names = RECIPES[name]
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    dst = tmp_path / "out"
    t0 = time.perf_counter()
    names = [str(small_src) if n == "{src}" else n for n in names]
    where = [] if str(small_src) in names else [path]  # a rule on a missing column names the data it lacks
    refused(["apply", path, small_src, dst], names=[*where, *names], sources=[small_src, path], dst=dst)
    assert time.perf_counter() - t0 < 5  # refused quickly (the bomb would take minutes and gigabytes)


def test_scalar_aliases_are_allowed(tmp_path, small_src):
    path = tmp_path / "ok.yaml"
    path.write_text("rules:\n  - {column: similarity, min: &t 0.3}\n  - {column: similarity, max: *t, name: hi}\n")
    rc, out, err = run_cli(["apply", path, small_src, "--dry-run", "--json"])
    assert rc == 0, err
    assert [r["rule"] for r in json.loads(out)["rules"]] == ["similarity>=0.3", "hi"]


def test_the_largest_recipe_loads_quickly(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("rules:\n" + "".join(f"  - {{column: similarity, min: 0.{i:05d}, name: r{i}}}\n"
                                         for i in range(MAX_RULES)))
    t0 = time.perf_counter()
    assert len(Recipe.load(path).rules) == MAX_RULES
    assert time.perf_counter() - t0 < 10


def _frame(n=6000, seed=0):
    rng = np.random.default_rng(seed)
    sim = rng.random(n)
    sim[rng.random(n) < 0.05] = np.nan
    return pl.DataFrame({"row": np.arange(n), "similarity": sim, "punsafe": rng.random(n)}).with_columns(
        pl.col("similarity").fill_nan(None))


def _threshold_recipe(k):
    return Recipe.from_dict({"rules": [{"column": ("similarity", "punsafe")[i % 2], "min": 0.3 * i / k, "name": f"r{i}"}
                                       for i in range(k)]})


def test_evaluation_is_linear_in_rules():
    f = _frame()
    times = {}
    for k in (1000, 4000):
        r = _threshold_recipe(k)
        best = float("inf")
        for _ in range(2):
            t0 = time.perf_counter()
            sel = evaluate(f, r)
            sel.counts()
            best = min(best, time.perf_counter() - t0)
        times[k] = best
    # quadratic (the old pairwise overlaps) was ~16x for 4x the rules (4,000 rules: 11 s here)
    assert times[4000] < 3.0, times
    assert times[4000] < 8 * times[1000] + 0.2, times


def test_linear_counts_equal_the_definition():
    f = _frame(500, seed=3)
    r = Recipe.from_dict({"rules": [{"column": ("similarity", "punsafe")[i % 2], "min": float(v), "name": f"r{i}"}
                                    for i, v in enumerate(np.random.default_rng(1).random(30) * 0.6)]})
    sel = evaluate(f, r)
    keep = np.stack([f.select(rule.keep()).to_series().to_numpy() for rule in r.rules])
    fail = ~keep
    first = np.where(fail.any(axis=0), fail.argmax(axis=0), -1)
    assert np.array_equal(sel.reason, first)
    assert sel.counts()["removed_alone"].to_list() == fail.sum(axis=1).tolist()
    assert sel.counts()["removed_in_order"].to_list() == [int((first == i).sum()) for i in range(30)]
    brute = np.array([[int((fail[i] & fail[j]).sum()) for j in range(30)] for i in range(30)])
    assert np.array_equal(sel.overlaps, brute)  # computed on demand from the packed bits
    assert sel.overlap_table().shape == (30, 31)


# -- two writers into one destination ---------------------------------------------------------------
PAUSED = textwrap.dedent("""\
    import sys, time
    from pathlib import Path
    import workbench.export.exporter as ex
    go, started = Path(sys.argv[1]), Path(sys.argv[2])
    real = ex.run_part
    def run_part(task):
        started.touch()
        while not go.exists():
            time.sleep(0.02)
        return real(task)
    ex.run_part = run_part
    from workbench.cli.main import main
    sys.exit(main(sys.argv[3:]))
    """)


def _paused_apply(tmp_path, argv):
    """A real `workbench apply` process that stops in its first part until `go` exists."""
    go, started = tmp_path / "go", tmp_path / "started"
    p = subprocess.Popen([sys.executable, "-c", PAUSED, str(go), str(started), *map(str, argv)], cwd=REPO,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while not started.exists():
        assert p.poll() is None, p.communicate()
        assert time.time() - t0 < 60
        time.sleep(0.02)
    return p, go


def _cli(*argv, timeout=60):
    p = subprocess.run([sys.executable, "-m", "workbench", *map(str, argv)], capture_output=True, text=True,
                       timeout=timeout, cwd=REPO)
    return p.returncode, p.stdout, p.stderr


@pytest.fixture
def apply_setup(tmp_path):
    src = make_embeddings(tmp_path / "src", rows=(60, 40), dim=16)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("rules: [{column: similarity, min: 0.25}]\n")
    return src, recipe, tmp_path / "out"


def test_second_export_into_one_destination_is_refused(tmp_path, apply_setup):
    src, recipe, dst = apply_setup
    first, go = _paused_apply(tmp_path, ["apply", recipe, src, dst, "--rows-per-shard", "20"])
    try:
        t0 = time.perf_counter()
        rc, out, err = _cli("apply", recipe, src, dst, "--rows-per-shard", "20")  # a second real process
        assert time.perf_counter() - t0 < 30
        lines = [x for x in err.splitlines() if x.strip()]
        assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
        assert lines[0].startswith("error: ") and str(dst) in lines[0] and "another" in lines[0]
        assert f"process {first.pid}" in lines[0]
        rows = tmp_path / "rows.parquet"
        pl.DataFrame({"row": [1, 2, 3]}).write_parquet(rows)
        rc, _, err = _cli("export", src, dst, "--rows", rows)  # `workbench export` too
        assert rc == 2 and "another" in err
        refused(["apply", recipe, src, dst], names=[dst, f"another export (process {first.pid})", ".staging/lock"],
                sources=[src])
    finally:
        go.touch()
        out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert _cli("verify", dst)[0] == 0
    assert not (dst / ".staging").exists()


def test_a_killed_export_leaves_no_lock_behind(tmp_path, apply_setup):
    src, recipe, dst = apply_setup
    first, _ = _paused_apply(tmp_path, ["apply", recipe, src, dst, "--rows-per-shard", "20"])
    first.send_signal(signal.SIGKILL)  # the OS drops its flock
    first.communicate(timeout=60)
    assert (dst / ".staging" / "lock").exists()
    rc, _, err = _cli("apply", recipe, src, dst, "--rows-per-shard", "20")
    assert rc == 0, err
    assert _cli("verify", dst)[0] == 0


def test_embedding_run_shares_the_lock(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    dst = tmp_path / "emb"
    dst.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""\
        import sys
        from workbench.io.staging import lock_destination
        lock = lock_destination({str(dst)!r}, "embedding run")
        print("locked", flush=True)
        sys.stdin.read()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert holder.stdout.readline().strip() == "locked"
        refused(["embed", images, dst, "--model", "ViT-B-32", "--random-weights"], names=[dst, f"another embedding run (process {holder.pid})"],
                sources=[images], dst=dst)
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)


# -- full disks -------------------------------------------------------------------------------------
@pytest.mark.parametrize("existing", [False, True], ids=["new-dst", "empty-dst"])
def test_no_room_refused_before_work_leaves_nothing(tmp_path, apply_setup, monkeypatch, existing):
    import workbench.export.exporter as ex

    src, recipe, dst = apply_setup
    dst = tmp_path / "deeper" / "out" if not existing else dst
    if existing:
        dst.mkdir()
    monkeypatch.setattr(ex, "free_bytes", lambda path: 0)
    refused(["apply", recipe, src, dst], names=[dst, "not enough free space"], sources=[src], dst=dst)
    assert existing or not (tmp_path / "deeper").exists()  # nor the parents it made
    rows = tmp_path / "rows.parquet"
    pl.DataFrame({"row": [1, 2, 3, 50]}).write_parquet(rows)
    refused(["export", src, dst, "--rows", rows], names=[dst, "not enough free space"], sources=[src, rows], dst=dst)


def _efbig(limit):
    import resource

    def pre():  # a real write error (EFBIG) past `limit` bytes in any file, like a disk filling up
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return pre


@pytest.mark.parametrize("fmt,limit,file", [
    ("laion", 30_000, "img_emb/img_emb_0.npy"),
    ("img2dataset", 3_000, "img2dataset/00000.parquet"),
])
def test_disk_filling_part_way_names_the_file(tmp_path, fmt, limit, file):
    src = make_embeddings(tmp_path / "src", rows=(600, 600), dim=64)
    (tmp_path / "r.yaml").write_text("rules: [{column: similarity, min: 0.2}]\n")
    dst = tmp_path / "out"
    before = tree_digest(src)
    p = subprocess.run([sys.executable, "-m", "workbench", "apply", tmp_path / "r.yaml", src, dst, "--format", fmt,
                        "--rows-per-shard", "500"], capture_output=True, text=True, timeout=120,
                       preexec_fn=_efbig(limit), cwd=REPO)
    lines = [x for x in p.stderr.splitlines() if x.strip()]
    assert p.returncode == 3 and len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    assert lines[0].startswith(f"error: {dst}: ") and lines[0].count(str(dst)) == 1
    assert file in lines[0] and "File too large" in lines[0] and "run the same command again" in lines[0]
    assert not (dst / "manifest.json").exists() and tree_digest(src) == before
    rc, _, err = _cli("apply", tmp_path / "r.yaml", src, dst, "--format", fmt, "--rows-per-shard", "500")
    assert rc == 0, err
    assert _cli("verify", dst)[0] == 0


def test_lock_file_is_gone_after_a_finished_write(tmp_path, apply_setup):
    src, recipe, dst = apply_setup
    rc, _, err = run_cli(["apply", recipe, src, dst])
    assert rc == 0, err
    assert not (dst / ".staging").exists()
    rc, out, err = run_cli(["apply", recipe, src, dst, "--json"])  # already complete: nothing left behind either
    assert rc == 0 and json.loads(out)["already_complete"] and not (dst / ".staging").exists()
