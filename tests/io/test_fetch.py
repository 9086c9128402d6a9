"""``workbench fetch`` / :func:`workbench.io.fetch.fetch_release` against a real HTTP server in a
thread (``http.server``) serving collections in the clip-retrieval and DataComp layouts, with
handlers that drop connections, go slowly, ignore Range, or lie about sizes."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import polars as pl
import pytest
from conftest import make_datacomp, make_embeddings

import workbench
from workbench.cli.main import main
from workbench.errors import IncompleteError, WorkbenchError
from workbench.io.fetch import MANIFEST, fetch_release, parse_parts
from workbench.io.releases import RELEASES, Release

REPO = Path(__file__).resolve().parents[2]


class Server:
    """Files under `root` over HTTP/1.0 with Range support; `behave` changes answers per file:
    ``drop``: {path: n} sends half the body then closes, n times; ``slow``: paths sent in 4 KiB blocks
    50 ms apart; ``ignore_range``: answer 200 with the whole file to Range requests; ``pages``: a
    fake Hub tree API (URL path -> (JSON entries, next URL path or None))."""

    def __init__(self, root: Path):
        self.root = root
        self.log: list[tuple[str, str, str | None, int]] = []  # method, path, Range header, status
        self.drop: dict[str, int] = {}
        self.slow: set[str] = set()
        self.ignore_range = False
        self.pages: dict[str, tuple[list, str | None]] = {}
        self.redirect: dict[str, str] = {}  # path prefix -> prefix it redirects to (302), as the Hub's resolve/
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_HEAD(self):
                server.answer(self, body=False)

            def do_GET(self):
                server.answer(self, body=True)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def gets(self, path: str) -> list[str | None]:
        """The Range headers of the GET requests for `path`, in order."""
        return [r for m, p, r, _ in self.log if m == "GET" and p == path]

    def answer(self, h: BaseHTTPRequestHandler, body: bool):
        path = unquote(h.path.split("?")[0]).lstrip("/")
        rng = h.headers.get("Range")
        if "/" + path in self.pages:
            entries, nxt = self.pages["/" + path]
            data = json.dumps(entries).encode()
            self.log.append((h.command, path, rng, 200))
            h.send_response(200)
            if nxt:
                h.send_header("Link", f'<{self.url.rstrip("/")}{nxt}>; rel="next"')
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            if body:
                h.wfile.write(data)
            return
        for prefix, to in self.redirect.items():
            if path.startswith(prefix):
                self.log.append((h.command, path, rng, 302))
                h.send_response(302)
                h.send_header("Location", self.url + to + path[len(prefix):])
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
        file = self.root / path
        if not file.is_file():
            self.log.append((h.command, path, rng, 404))
            h.send_error(404)
            return
        data = file.read_bytes()
        start = 0
        if rng and not self.ignore_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
            if start >= len(data):
                self.log.append((h.command, path, rng, 416))
                h.send_response(416)
                h.send_header("Content-Range", f"bytes */{len(data)}")
                h.end_headers()
                return
            h.send_response(206)
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            h.send_response(200)
        self.log.append((h.command, path, rng, 206 if start or (rng and not self.ignore_range) else 200))
        h.send_header("Content-Length", str(len(data) - start))
        h.end_headers()
        if not body:
            return
        payload = data[start:]
        if body and self.drop.get(path, 0) > 0:
            self.drop[path] -= 1
            h.wfile.write(payload[: len(payload) // 2])
            h.wfile.flush()
            h.close_connection = True
            return
        if path in self.slow:
            for k in range(0, len(payload), 4096):
                h.wfile.write(payload[k:k + 4096])
                h.wfile.flush()
                time.sleep(0.05)
            return
        h.wfile.write(payload)


@pytest.fixture
def served(tmp_path):
    servers = []

    def serve(root: Path) -> Server:
        s = Server(root)
        servers.append(s)
        return s

    yield serve
    for s in servers:
        s.close()


def laion(tmp_path: Path, rows=(300, 200, 100), dim=64, padding=0) -> Path:
    return make_embeddings(tmp_path / "src", rows=rows, dim=dim, padding=padding)


def same_file(a: Path, b: Path) -> bool:
    return a.read_bytes() == b.read_bytes()


def check_parts(src: Path, dst: Path, parts: list[int]):
    """DST opens with exactly these parts of SRC: embeddings and metadata equal, row by row."""
    full, got = workbench.open_collection(src), workbench.open_collection(dst)
    assert got.layout == "embeddings" and [s.number for s in got._layout.shards] == parts
    assert len(got) == sum(full._layout.shards[p].rows for p in parts)
    for k, p in enumerate(parts):
        for kind in ("image", "text"):
            np.testing.assert_array_equal(np.asarray(got.embeddings(k, kind)), np.asarray(full.embeddings(p, kind)))
        a = got.shard_metadata(k).collect().drop("row")
        b = full.shard_metadata(p).collect().drop("row")
        assert a.equals(b)


# -- parts and sources ------------------------------------------------------------------------------
def test_parse_parts():
    assert parse_parts("0-1") == (0, 1) and parse_parts("7") == (7, 7) and parse_parts(3) == (3, 3)
    assert parse_parts(None) is None and parse_parts(range(2, 5)) == (2, 4)
    for bad in ("1-0", "a", "-1", "0-", "1,2", ""):
        with pytest.raises(WorkbenchError, match="--parts"):
            parse_parts(bad)


def test_the_release_table_is_one_table_with_what_a_fetch_needs():
    assert {"laion400m", "datacomp-small", "datacomp-medium"} <= set(RELEASES)
    for r in RELEASES.values():
        assert r.base_url.startswith("https://") and r.base_url.endswith("/") and r.licence
        assert r.layout in ("embeddings", "datacomp") and r.enumerate in ("numbered", "listing")
        assert (r.parts is not None) == (r.enumerate == "numbered") and (r.listing is not None) == (r.enumerate == "listing")
    assert RELEASES["laion400m"].parts == 410
    assert RELEASES["datacomp-small"].listing == "https://huggingface.co/api/datasets/mlfoundations/datacomp_small/tree/main"


# -- a full fetch --------------------------------------------------------------------------------------
@pytest.mark.parametrize("padding", [0, 4])
def test_fetch_parts_0_1_opens_with_those_rows(tmp_path, served, padding):
    src = laion(tmp_path, padding=padding)
    s = served(src)
    dst = tmp_path / "dst"
    r = fetch_release(s.url, dst, "0-1", retry_wait=0)
    check_parts(src, dst, [0, 1])
    assert r.parts == [0, 1] and r.rows == 500 and len(r.files) == 6 and r.resumed == []
    name = "0000" if padding else "0"
    assert (dst / "img_emb" / f"img_emb_{name}.npy").is_file()
    m = json.loads((dst / MANIFEST).read_text())
    assert m["source"] == s.url and m["parts"] == [0, 1] and m["finished"] and m["rows"] == 500
    for f in m["files"]:
        assert f["sha256"] == hashlib.sha256((dst / f["path"]).read_bytes()).hexdigest()
        assert f["size"] == (src / f["path"]).stat().st_size
    assert r.bytes == sum(f["size"] for f in m["files"])
    assert not list(dst.rglob("*.part"))


def test_all_parts_of_a_url_are_counted_by_probing(tmp_path, served):
    src = laion(tmp_path, rows=(30, 20, 10, 5, 5), dim=16)
    s = served(src)
    r = fetch_release(s.url, tmp_path / "dst", retry_wait=0)
    assert r.parts == [0, 1, 2, 3, 4] and r.rows == 70
    check_parts(src, tmp_path / "dst", [0, 1, 2, 3, 4])


def test_a_later_fetch_adds_parts_and_a_rerun_downloads_nothing(tmp_path, served):
    src = laion(tmp_path)
    s = served(src)
    dst = tmp_path / "dst"
    fetch_release(s.url, dst, "0", retry_wait=0)
    r = fetch_release(s.url, dst, "1-2", retry_wait=0)
    check_parts(src, dst, [0, 1, 2])
    assert json.loads((dst / MANIFEST).read_text())["parts"] == [0, 1, 2]
    n = len(s.gets("img_emb/img_emb_1.npy"))
    again = fetch_release(s.url, dst, "1-2", retry_wait=0)
    assert again.downloaded == 0 and len(s.gets("img_emb/img_emb_1.npy")) == n
    assert again.files == r.files


def test_a_second_fetch_into_the_same_folder_is_refused_while_one_runs(tmp_path, served):
    """Two fetches writing one DST would race on its files: the second is refused at once, and
    runs once the first is done (the lock dies with its holder, so a killed fetch leaves none)."""
    from workbench.errors import WriteError
    from workbench.io.staging import lock_destination

    src = laion(tmp_path)
    s = served(src)
    dst = tmp_path / "dst"
    fetch_release(s.url, dst, "0", retry_wait=0)
    n = len(s.gets("img_emb/img_emb_1.npy"))
    with lock_destination(dst, "fetch"):  # what a running fetch holds
        with pytest.raises(WriteError, match="another"):
            fetch_release(s.url, dst, "1", retry_wait=0)
    assert len(s.gets("img_emb/img_emb_1.npy")) == n  # refused before any download
    fetch_release(s.url, dst, "1", retry_wait=0)
    check_parts(src, dst, [0, 1])
    assert not (dst / ".staging").exists()


def test_cli_json_prints_only_the_summary(tmp_path, served, capsys):
    src = laion(tmp_path)
    s = served(src)
    assert main(["fetch", s.url, str(tmp_path / "dst"), "--parts", "1", "--json", "--quiet"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"source", "dst", "parts", "files", "bytes", "rows"}
    assert out["parts"] == [1] and out["rows"] == 200 and len(out["files"]) == 3


# -- dropped connections, kills, servers that ignore Range ----------------------------------------------
def test_a_dropped_connection_is_resumed_with_range(tmp_path, served):
    src = laion(tmp_path)
    s = served(src)
    path = "img_emb/img_emb_0.npy"
    size = (src / path).stat().st_size
    s.drop[path] = 1
    r = fetch_release(s.url, tmp_path / "dst", "0-1", retry_wait=0)
    assert s.gets(path) == [None, f"bytes={size // 2}-"]  # the second request continues the half
    assert r.resumed == [] and same_file(src / path, tmp_path / "dst" / path)
    check_parts(src, tmp_path / "dst", [0, 1])


def test_out_of_retries_the_part_file_is_kept_and_the_next_run_resumes(tmp_path, served):
    src = laion(tmp_path)
    s = served(src)
    path = "text_emb/text_emb_1.npy"
    size = (src / path).stat().st_size
    s.drop[path] = 2
    dst = tmp_path / "dst"
    with pytest.raises(IncompleteError, match="run the same fetch again") as err:
        fetch_release(s.url, dst, "0-1", retries=1, retry_wait=0)
    assert err.value.path == s.url + path
    part = dst / (path + ".part")
    had = part.stat().st_size
    assert had == size // 2 + (size - size // 2) // 2  # half, then half of the rest
    assert not (dst / path).exists()
    r = fetch_release(s.url, dst, "0-1", retry_wait=0)
    assert s.gets(path)[-1] == f"bytes={had}-"
    assert r.resumed == [path] and not part.exists()
    check_parts(src, dst, [0, 1])


def test_a_killed_run_resumes_from_the_part_file(tmp_path, served):
    src = laion(tmp_path, rows=(2000, 300, 100), dim=128)  # img_emb_0.npy: 512 KB, sent slowly
    s = served(src)
    path = "img_emb/img_emb_0.npy"
    size = (src / path).stat().st_size
    s.slow.add(path)
    dst = tmp_path / "dst"
    part = dst / (path + ".part")
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "workbench", "fetch", s.url, str(dst), "--parts", "0-1", "--quiet"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while not (part.exists() and part.stat().st_size >= 64 * 1024) and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    had = part.stat().st_size
    assert 0 < had < size and not (dst / path).exists()
    s.slow.clear()
    r = fetch_release(s.url, dst, "0-1", retry_wait=0)
    assert s.gets(path)[-1] == f"bytes={had}-"  # continued where the kill left it, not from 0
    assert r.resumed == [path] and same_file(src / path, dst / path)
    check_parts(src, dst, [0, 1])


def test_a_server_that_ignores_range_restarts_the_file_cleanly(tmp_path, served):
    src = laion(tmp_path)
    s = served(src)
    path = "img_emb/img_emb_1.npy"
    s.drop[path] = 1
    dst = tmp_path / "dst"
    with pytest.raises(IncompleteError):
        fetch_release(s.url, dst, "0-1", retries=0)
    part = dst / (path + ".part")
    part.write_bytes(b"\xff" * part.stat().st_size)  # garbage: kept only if the restart appended to it
    s.ignore_range = True
    fetch_release(s.url, dst, "0-1", retry_wait=0)
    last = [e for e in s.log if e[:2] == ("GET", path)][-1]
    assert last[2] is not None and last[3] == 200  # asked for a range, got the whole file
    assert same_file(src / path, dst / path)
    check_parts(src, dst, [0, 1])


# -- refusals ---------------------------------------------------------------------------------------------
def test_a_missing_part_is_refused_naming_its_url_before_any_download(tmp_path, served, capsys):
    src = laion(tmp_path)
    s = served(src)
    dst = tmp_path / "dst"
    assert main(["fetch", s.url, str(dst), "--parts", "1-5", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"{s.url}img_emb/img_emb_3.npy" in err and "part 3 is missing" in err
    assert not [m for m, *_ in s.log if m == "GET"] and not list(dst.rglob("*.npy"))


def test_bad_input_exits_2_with_one_line(tmp_path, served, capsys):
    src = laion(tmp_path)
    s = served(src)
    cases = [(["fetch", "laion-9b", str(tmp_path / "a")], "unknown release 'laion-9b'"),
             (["fetch", s.url, str(tmp_path / "b"), "--parts", "2-1"], "--parts"),
             (["fetch", s.url, str(tmp_path / "c"), "--parts", "x"], "--parts"),
             (["fetch", "laion400m", str(tmp_path / "d"), "--parts", "410"], "has 410 parts"),
             (["fetch", str(tmp_path / "src"), str(tmp_path / "e")], "unknown release"),
             (["fetch", s.url + "nothing/", str(tmp_path / "f"), "--parts", "0"], "not a folder in the clip-retrieval layout")]
    for argv, words in cases:
        assert main(argv + ["--quiet"]) == 2, argv
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1 and "Traceback" not in err, (argv, err)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    assert main(["fetch", s.url, str(tmp_path / "full"), "--parts", "0", "--quiet"]) == 2
    assert "not empty" in capsys.readouterr().err
    fetch_release(s.url, tmp_path / "g", "0")
    other = served(laion(tmp_path / "o"))
    assert main(["fetch", other.url, str(tmp_path / "g"), "--parts", "0", "--quiet"]) == 2
    assert "holds a fetch of" in capsys.readouterr().err


# -- DataComp: parts from a listing, sizes and hashes from it ------------------------------------------------
def datacomp_pool(tmp_path: Path) -> tuple[Path, list[str]]:
    root = make_datacomp(tmp_path / "pool", rows=(4, 6, 5))
    stems = ["c0ffee" + "0" * 26, "0a1b2c" + "0" * 26, "7e57ab" + "0" * 26]  # DataComp names shards by hash
    for i, stem in enumerate(stems):
        for ext in ("parquet", "npz"):
            (root / f"{i:08d}.{ext}").rename(root / f"{stem}.{ext}")
    return root, sorted(stems)


def hub_release(s: Server, root: Path, lie: dict | None = None) -> Release:
    """The datacomp-small entry with its URLs pointed at the local server, and a two-page tree listing
    in the Hub's format (lfs: oid = sha256, size)."""
    entries = [{"type": "file", "path": ".gitattributes", "size": 10, "oid": "0" * 40}]
    for p in sorted(root.iterdir()):
        size, sha = p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest()
        size, sha = (lie or {}).get(p.name, (size, sha))
        entries.append({"type": "file", "path": p.name, "size": size, "oid": "1" * 40,
                        "lfs": {"oid": sha, "size": size, "pointerSize": 134}})
    half = len(entries) // 2
    s.pages = {"/api/tree": (entries[:half], "/api/tree2"), "/api/tree2": (entries[half:], None)}
    s.redirect = {"resolve/": "files/"}
    return dataclasses.replace(RELEASES["datacomp-small"], base_url=s.url + "resolve/", listing=s.url + "api/tree")


def test_datacomp_parts_come_from_the_listing_and_open_as_a_pool(tmp_path, served):
    root, stems = datacomp_pool(tmp_path)
    (tmp_path / "site").mkdir()
    root.rename(tmp_path / "site" / "files")
    root = tmp_path / "site" / "files"
    s = served(tmp_path / "site")
    dst = tmp_path / "dst"
    rel = hub_release(s, root)
    npz = f"{stems[1]}.npz"
    s.drop["files/" + npz] = 1
    r = fetch_release(rel, dst, "0-1", retry_wait=0)
    size = (root / npz).stat().st_size
    assert s.gets("files/" + npz) == [None, f"bytes={size // 2}-"]  # Range kept across the redirect
    assert [f["path"] for f in r.files] == [f"{stems[0]}.parquet", f"{stems[0]}.npz", f"{stems[1]}.parquet",
                                           f"{stems[1]}.npz"]
    c = workbench.open_collection(dst)
    assert c.layout == "datacomp" and [sh.name for sh in c._layout.shards] == stems[:2]
    full = workbench.open_collection(root)
    assert len(c) == r.rows == sum(sh.rows for sh in full._layout.shards[:2])
    np.testing.assert_array_equal(np.asarray(c.embeddings(1)), np.asarray(full.embeddings(1)))
    assert c.metadata.collect()["uid"].to_list() == full.metadata.collect()["uid"].to_list()[: len(c)]
    assert ("GET", "api/tree2", None, 200) in s.log  # the second page of the listing was followed
    assert json.loads((dst / MANIFEST).read_text())["release"] == "datacomp-small"


def test_a_size_or_hash_that_differs_from_the_listing_is_refused_and_nothing_is_put_in_place(tmp_path, served):
    root, stems = datacomp_pool(tmp_path)
    (tmp_path / "site").mkdir()
    root.rename(tmp_path / "site" / "files")
    root = tmp_path / "site" / "files"
    s = served(tmp_path / "site")
    npz = f"{stems[0]}.npz"
    real = (root / npz).stat().st_size
    rel = hub_release(s, root, lie={npz: (real + 100, hashlib.sha256((root / npz).read_bytes()).hexdigest())})
    with pytest.raises(WorkbenchError, match="size mismatch") as err:
        fetch_release(rel, tmp_path / "a", "0", retry_wait=0)
    assert err.value.path == s.url + "resolve/" + npz
    assert not (tmp_path / "a" / npz).exists() and not list((tmp_path / "a").glob("*.part"))
    rel = hub_release(s, root, lie={npz: (real, "ab" * 32)})
    with pytest.raises(WorkbenchError, match="sha256 mismatch"):
        fetch_release(rel, tmp_path / "b", "0", retry_wait=0)
    assert not (tmp_path / "b" / npz).exists() and not list((tmp_path / "b").glob("*.part"))
    assert (tmp_path / "b" / f"{stems[0]}.parquet").is_file()  # the file that matched is in place
    pl.read_parquet(tmp_path / "b" / f"{stems[0]}.parquet")
