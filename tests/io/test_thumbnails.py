"""Gallery thumbnails: from tars and local files; remote only when allowed; never an exception."""
import http.server
import io
import threading
from functools import partial

import pytest
from PIL import Image

import workbench
from conftest import IMAGES, make_webdataset, needs_shared
from workbench.io.thumbnails import make_thumbnail, thumbnail

needs_rclip = needs_shared("images/rclip")


def test_thumbnails_from_webdataset_tars(tmp_path):
    c = workbench.open_collection(make_webdataset(tmp_path / "wds"))
    t = thumbnail(c, 0, size=64)
    assert t.source == "tar" and t.jpeg and not t.problem
    with Image.open(io.BytesIO(t.jpeg)) as im:
        assert im.format == "JPEG" and max(im.size) <= 64


@needs_rclip
@pytest.mark.parametrize("name", ["bee_animated.gif", "chess-knight.tiff", "duck.jp2", "magpie.pbm", "tree.webp",
                                  "boats on a lake.png"])
def test_every_shipped_format_makes_a_jpeg(name):
    jpeg = make_thumbnail((IMAGES / "rclip" / name).read_bytes(), 96)
    with Image.open(io.BytesIO(jpeg)) as im:
        assert im.format == "JPEG" and im.mode == "RGB" and max(im.size) <= 96


@pytest.fixture
def server():
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(IMAGES / "rclip"))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_remote_images_only_when_allowed(tmp_path, server):
    c = workbench.open_collection(make_webdataset(tmp_path / "wds"))
    url = f"{server}/cat.jpg"
    off = thumbnail(c, 0, url=url)  # row 0 has a tar image: found locally, no fetch
    assert off.source == "tar"
    # a row without a local image: the parquet-only layout has none
    from conftest import make_parquet_only

    p = workbench.open_collection(make_parquet_only(tmp_path / "pq"))
    t = thumbnail(p, 0, url=url)
    assert t.jpeg is None and "remote images are off" in t.problem
    t = thumbnail(p, 0, url=url, allow_remote=True)
    assert t.source == "remote" and t.jpeg
    bad = thumbnail(p, 0, url=f"{server}/not-an-image.txt", allow_remote=True)
    assert bad.jpeg is None and "not a readable image" in bad.problem
    gone = thumbnail(p, 0, url=f"{server}/missing.jpg", allow_remote=True)
    assert gone.jpeg is None and "remote fetch failed" in gone.problem
    assert "not an http" in thumbnail(p, 0, url="file:///etc/passwd", allow_remote=True).problem
