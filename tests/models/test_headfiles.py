"""Head files fetched on first use into the heads folder: pinned by size and sha256, from a mirror
(a local folder, file:// or http://) or upstream; refused and not kept when they differ; one clear
line when offline; Q16's upstream pickle read with the array-only unpickler."""
from __future__ import annotations

import functools
import http.server
import json
import pickle
import shutil
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, SHARED_HEADS, needs_shared, unit_rows
from workbench.errors import HeadChecksumError, HeadFetchError, UnsafePickleError, WorkbenchError
from workbench.models import headfiles as HF
from workbench.models.arraypickle import load_array_pickle

needs_heads = needs_shared("heads")
WB = [sys.executable, "-m", "workbench"]


@pytest.fixture
def heads_dir(tmp_path, monkeypatch):
    """A fresh, empty heads folder; no mirror and no offline switch unless a test sets them."""
    d = tmp_path / "heads"
    monkeypatch.setenv("WORKBENCH_HEADS_DIR", str(d))
    monkeypatch.delenv("WORKBENCH_HEADS_MIRROR", raising=False)
    monkeypatch.delenv("WORKBENCH_OFFLINE", raising=False)
    return d


@pytest.fixture
def mirror_copy(tmp_path) -> Path:
    d = tmp_path / "mirror"
    shutil.copytree(SHARED_HEADS, d)
    for p in d.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    return d


@pytest.fixture
def http_server():
    """Serves a folder over http://127.0.0.1 (a real server in a thread); yields a start(folder) -> URL."""
    servers = []

    def start(folder: Path) -> str:
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
        handler.log_message = lambda *a, **k: None
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}"

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


def _flip(path: Path, at: int = 1000) -> None:
    b = bytearray(path.read_bytes())
    b[at % len(b)] ^= 1
    path.write_bytes(bytes(b))


def _upstream_q16(npy: Path) -> bytes:
    """Q16's upstream ``prompts.p`` rebuilt from the shared prompts.npy (numpy of the time pickled the
    array under ``numpy.core.multiarray``); equal to upstream's bytes, as the pinned sha256 proves."""
    return pickle.dumps(np.load(npy, allow_pickle=False), protocol=3).replace(
        b"numpy._core.multiarray", b"numpy.core.multiarray")


# -- the registry ------------------------------------------------------------------------------------
def test_registry_covers_every_head_once_with_pins():
    from workbench.models.heads import HEADS

    assert [f.name for f in HF.HEAD_FILES] == list(HEADS)
    assert len({f.rel for f in HF.HEAD_FILES}) == len(HF.HEAD_FILES)
    for f in HF.HEAD_FILES:
        assert f.dim == HEADS[f.name].dim and f.size > 0 and len(f.sha256) == 64 and f.licence
        assert f.url.startswith("https://raw.githubusercontent.com/") and len(f.url.split("/")[5]) == 40  # a commit
    with pytest.raises(WorkbenchError, match="unknown head"):
        HF.files_for("nsfw-xl")


@needs_heads
def test_pins_match_the_shared_byte_copies():
    for f in HF.HEAD_FILES:
        HF.check(SHARED_HEADS / f.rel, f.size, f.sha256, f.rel, "shared")


def test_default_heads_dir(monkeypatch):
    monkeypatch.delenv("WORKBENCH_HEADS_DIR")
    assert HF.default_heads_dir() == Path.home() / ".cache" / "laion-workbench" / "heads"
    assert "shared" not in str(HF.default_heads_dir())


# -- fetching from a mirror --------------------------------------------------------------------------
@needs_heads
@pytest.mark.parametrize("form", ["path", "file"])
def test_on_demand_fetch_from_a_local_mirror(heads_dir, monkeypatch, form):
    import workbench

    monkeypatch.setenv("WORKBENCH_HEADS_MIRROR", str(SHARED_HEADS) if form == "path" else SHARED_HEADS.as_uri())
    assert not (heads_dir / "laion_nsfw_detector").exists()
    h = workbench.load_head("violence-b32")
    got = heads_dir / "laion_nsfw_detector" / "violence_detection_vit_b_32.npy"
    assert Path(h.source) == got and got.read_bytes() == (SHARED_HEADS / got.relative_to(heads_dir)).read_bytes()
    assert [p.name for p in got.parent.iterdir()] == [got.name]  # no temporary left beside it
    # cached now: used offline, no mirror needed
    monkeypatch.delenv("WORKBENCH_HEADS_MIRROR")
    monkeypatch.setenv("WORKBENCH_OFFLINE", "1")
    assert HF.ensure_head("violence-b32") == [got]


@needs_heads
@pytest.mark.parametrize("via", ["path", "http"])
def test_a_tampered_mirror_file_is_refused_and_nothing_is_kept(heads_dir, mirror_copy, http_server, via):
    f = HF.BY_NAME["nsfw-b32"]
    _flip(mirror_copy / f.rel)
    mirror = str(mirror_copy) if via == "path" else http_server(mirror_copy)
    with pytest.raises(HeadChecksumError) as ei:
        HF.fetch_file(f, heads_dir, mirror)
    msg = str(ei.value)
    assert f.rel in msg and "sha256" in msg and "refused" in msg
    assert not heads_dir.exists() or not any(heads_dir.rglob("*"))  # no file, no temp, no empty folder


@needs_heads
def test_a_short_file_is_refused_by_size(heads_dir, mirror_copy):
    f = HF.BY_NAME["aesthetic-v1-b32"]
    p = mirror_copy / f.rel
    p.write_bytes(p.read_bytes()[:-10])
    with pytest.raises(HeadChecksumError, match=f"size {f.size - 10} bytes, pinned {f.size}"):
        HF.fetch_file(f, heads_dir, str(mirror_copy))
    assert not (heads_dir / f.rel).exists()


@needs_heads
def test_http_mirror_through_pooch(heads_dir, http_server, monkeypatch):
    monkeypatch.setenv("WORKBENCH_HEADS_MIRROR", http_server(SHARED_HEADS))
    paths = HF.ensure_head("q16-l14")
    assert paths == [heads_dir / "q16/ViT-L-14/prompts.npy"]
    assert paths[0].read_bytes() == (SHARED_HEADS / "q16/ViT-L-14/prompts.npy").read_bytes()


@needs_heads
def test_a_mirror_without_the_file_says_where_to_place_it(heads_dir, tmp_path, http_server):
    f = HF.BY_NAME["nsfw-l14"]
    with pytest.raises(HeadFetchError) as ei:
        HF.fetch_file(f, heads_dir, str(tmp_path / "empty"))
    assert str(heads_dir / f.rel) in str(ei.value) and f.url in str(ei.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(HeadFetchError, match="HTTP 404"):
        HF.fetch_file(f, heads_dir, http_server(tmp_path / "empty"))
    assert not heads_dir.exists() or not any(heads_dir.rglob("*"))


# -- offline -----------------------------------------------------------------------------------------
def test_offline_missing_head_is_one_clear_line(heads_dir, monkeypatch):
    import workbench

    monkeypatch.setenv("WORKBENCH_OFFLINE", "1")
    f = HF.BY_NAME["nsfw-b32"]
    with pytest.raises(HeadFetchError) as ei:
        workbench.load_head("nsfw-b32")
    msg = str(ei.value)
    assert "\n" not in msg and str(heads_dir / f.rel) in msg and f.url in msg and "WORKBENCH_OFFLINE" in msg
    out = subprocess.run(WB + ["heads", "fetch", "nsfw-b32"], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and str(heads_dir / f.rel) in out.stderr


def test_no_network_is_a_clear_error(heads_dir, monkeypatch):
    """Upstream unreachable (a closed local port stands in for no network): one line, file and URL."""
    f = replace(HF.BY_NAME["aesthetic-v1-b32"], url="http://127.0.0.1:9/sa_0_4_vit_b_32_linear.pth")
    with pytest.raises(HeadFetchError) as ei:
        HF.fetch_file(f, heads_dir)
    assert "no connection" in str(ei.value) and str(heads_dir / f.rel) in str(ei.value) and f.url in str(ei.value)
    assert not heads_dir.exists() or not any(heads_dir.rglob("*"))


# -- Q16: upstream's pickle, read without running it -------------------------------------------------
@needs_heads
@pytest.mark.parametrize("name", ["q16-b32", "q16-l14"])
def test_q16_upstream_pickle_is_converted_to_the_pinned_npy(heads_dir, tmp_path, http_server, name):
    f = HF.BY_NAME[name]
    raw = _upstream_q16(SHARED_HEADS / f.rel)
    upstream = tmp_path / "upstream"
    upstream.mkdir()
    (upstream / "prompts.p").write_bytes(raw)
    got = HF.fetch_file(replace(f, url=http_server(upstream) + "/prompts.p"), heads_dir)  # no mirror: "upstream"
    assert got.read_bytes() == (SHARED_HEADS / f.rel).read_bytes()
    assert sorted(p.name for p in got.parent.iterdir()) == ["prompts.npy"]


@needs_heads
def test_q16_upstream_pickle_placed_by_hand_offline(heads_dir, monkeypatch):
    import workbench

    f = HF.BY_NAME["q16-b32"]
    monkeypatch.setenv("WORKBENCH_OFFLINE", "1")
    (heads_dir / "q16/ViT-B-32").mkdir(parents=True)
    (heads_dir / "q16/ViT-B-32/prompts.p").write_bytes(_upstream_q16(SHARED_HEADS / f.rel))
    h = workbench.load_head("q16-b32")
    assert (heads_dir / f.rel).read_bytes() == (SHARED_HEADS / f.rel).read_bytes()
    assert h(unit_rows(3, 512, 0)).shape == (3,)


class _Exploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "ran"))


class _SystemExploit:
    def __reduce__(self):
        import os

        return (os.system, ("touch /nonexistent-never",))


def test_an_exploit_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "marker"
    evil = pickle.dumps(_Exploit(marker))
    with pytest.raises(UnsafePickleError, match="pathlib"):
        load_array_pickle(evil, "evil.p")
    assert not marker.exists()
    with pytest.raises(UnsafePickleError, match=r"(posix|os)\.system"):
        load_array_pickle(pickle.dumps(_SystemExploit()), "evil.p")
    # an array whose pickle also smuggles a call: refused as a whole
    smuggled = pickle.dumps([np.zeros((2, 4), np.float16), _Exploit(marker)])
    with pytest.raises(UnsafePickleError):
        load_array_pickle(smuggled, "evil.p")
    assert not marker.exists()
    # only numeric arrays come out
    with pytest.raises(UnsafePickleError, match="numeric numpy array"):
        load_array_pickle(pickle.dumps({"a": 1}), "dict.p")
    with pytest.raises(UnsafePickleError, match="not a readable"):
        load_array_pickle(b"\x80\x03garbage", "bad.p")
    a = np.arange(6, dtype=np.float16).reshape(2, 3)
    np.testing.assert_array_equal(load_array_pickle(pickle.dumps(a)), a)


def test_an_exploit_pickle_from_upstream_is_refused_and_nothing_kept(heads_dir, tmp_path, http_server):
    """Through the whole fetch path: a "prompts.p" that would run code, whose sha256 is (for the test)
    the pinned one, is refused by the unpickler; the marker never appears and nothing is cached."""
    import hashlib

    marker = tmp_path / "marker"
    evil = pickle.dumps(_Exploit(marker))
    up = tmp_path / "up"
    up.mkdir()
    (up / "prompts.p").write_bytes(evil)
    f = replace(HF.BY_NAME["q16-b32"], url=http_server(up) + "/prompts.p", upstream_size=len(evil),
                upstream_sha256=hashlib.sha256(evil).hexdigest())
    with pytest.raises(UnsafePickleError):
        HF.fetch_file(f, heads_dir)
    assert not marker.exists()
    assert not heads_dir.exists() or not any(heads_dir.rglob("*"))


def test_only_the_array_unpickler_reads_pickles():
    import re

    for p in (REPO / "workbench").rglob("*.py"):
        if re.search(r"\bpickle\.(load|loads|Unpickler|_Unpickler)\b", p.read_text()):
            assert p.name == "arraypickle.py", p


# -- the CLI -----------------------------------------------------------------------------------------
@needs_heads
def test_cli_heads_fetch_and_list(heads_dir, mirror_copy):
    out = subprocess.run(WB + ["heads", "list", "--json"], capture_output=True, text=True, cwd=REPO, check=True)
    rows = json.loads(out.stdout)["heads"]
    assert {r["name"]: (r["dim"], r["cached"]) for r in rows}["nsfw-l14"] == (768, False)
    assert all(r["upstream"].startswith("https://") for r in rows)
    out = subprocess.run(WB + ["heads", "fetch", "nsfw-b32", "q16-b32", "--mirror", mirror_copy.as_uri()],
                         capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert "fetched" in out.stdout and "nsfw-b32" in out.stdout
    rows = {r["name"]: r for r in json.loads(subprocess.run(WB + ["heads", "list", "--json"], capture_output=True,
                                                             text=True, cwd=REPO, check=True).stdout)["heads"]}
    assert rows["nsfw-b32"]["cached"] and rows["q16-b32"]["cached"] and not rows["nsfw-l14"]["cached"]
    text = subprocess.run(WB + ["heads", "list"], capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert any(line.split()[:3] == ["nsfw-b32", "512", "cached"] for line in text.splitlines())
    # again: cached and checked, not fetched; a damaged cached copy is fetched again
    _flip(heads_dir / HF.BY_NAME["nsfw-b32"].rel)
    out = subprocess.run(WB + ["heads", "fetch", "nsfw-b32", "q16-b32", "--mirror", str(mirror_copy), "--json"],
                         capture_output=True, text=True, cwd=REPO, check=True)
    status = {r["name"]: r["status"] for r in json.loads(out.stdout)["files"]}
    assert status == {"nsfw-b32": "replaced", "q16-b32": "cached"}
    HF.check(heads_dir / HF.BY_NAME["nsfw-b32"].rel, HF.BY_NAME["nsfw-b32"].size, HF.BY_NAME["nsfw-b32"].sha256, "", "")


@needs_heads
def test_cli_refuses_a_tampered_mirror_with_exit_2(heads_dir, mirror_copy):
    rel = HF.BY_NAME["violence-l14"].rel
    _flip(mirror_copy / rel, 200)
    out = subprocess.run(WB + ["heads", "fetch", "violence-l14", "--mirror", str(mirror_copy)],
                         capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 2 and rel in out.stderr and "Traceback" not in out.stderr
    assert not (heads_dir / rel).exists()


def test_cli_unknown_head_exit_2(heads_dir):
    out = subprocess.run(WB + ["heads", "fetch", "nsfw-xl"], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 2 and "unknown head 'nsfw-xl'" in out.stderr
