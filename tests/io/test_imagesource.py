import io
import json
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import IMAGES, make_webdataset, needs_shared

needs_rclip = needs_shared("images/rclip")

from workbench.errors import LayoutError, WorkbenchError
from workbench.io.imagesource import fingerprint, list_images, read_image_bytes

RCLIP = IMAGES / "rclip"


@needs_rclip
def test_a_folder_lists_every_file_with_captions_from_names():
    items = list_images(RCLIP)
    keys = [it.key for it in items]
    paths = [it.path for it in items]
    assert paths == sorted(paths) and len(keys) == len(set(keys))  # file order, every key unique
    assert "not-an-image" in keys and "LICENSE" in keys  # not images: they fail when decoded, visibly
    assert {"duck", "kookaburras", "magpie", "chess-knight", "tree", "bee_animated"} <= set(keys)
    cat = next(it for it in items if it.key == "black cat sleeping on a chair")
    assert cat.caption == "black cat sleeping on a chair" and cat.path.endswith(".JPG") and not cat.tar
    assert read_image_bytes(cat) == (RCLIP / "black cat sleeping on a chair.JPG").read_bytes()


@needs_rclip
def test_sidecar_captions_tables_and_nested_folders(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / ".hidden").write_text("x")
    photo = (RCLIP / "cat.jpg").read_bytes()
    (tmp_path / "b.jpg").write_bytes(photo)
    (tmp_path / "b.txt").write_text("a cat on a <b>mat</b>\n")  # sidecar: not an item, its caption
    (tmp_path / "sub" / "a_photo.png").write_bytes((RCLIP / "boats on a lake.png").read_bytes())
    (tmp_path / "sub" / "c.jpg").write_bytes(photo)
    (tmp_path / "sub" / "c.png").write_bytes((RCLIP / "boats on a lake.png").read_bytes())
    (tmp_path / "caps.csv").write_text("filename,caption\nc.jpg,from the table\n")
    items = list_images(tmp_path, captions=tmp_path / "caps.csv")
    assert [(it.key, it.caption) for it in items] == [
        ("b", "a cat on a <b>mat</b>"), ("sub/a_photo", "a photo"), ("sub/c.jpg", "from the table"), ("sub/c.png", "c")]
    with pytest.raises(LayoutError, match="caption column"):
        (tmp_path / "bad.csv").write_text("filename,words\nc.jpg,x\n")
        list_images(tmp_path, captions=tmp_path / "bad.csv")


def test_webdataset_tars(tmp_path):
    root = make_webdataset(tmp_path / "wds", per_shard=(3, 2))
    with tarfile.open(root / "00002.tar", "w") as tf:  # a sample without an image
        for name, data in (("000020000.txt", b"lonely caption"), ("000020000.json", json.dumps({"url": "u"}).encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    items = list_images(root)
    assert [it.key for it in items] == ["000000001", "000000002", "000000003", "000010001", "000010002", "000020000"]
    first = items[0]
    assert first.tar and first.member == "000000001.jpg" and first.caption == "web caption <b>000000001</b>"
    assert first.meta["url"] == "https://synthetic.invalid/wds/000000001.jpg"
    with tarfile.open(root / "00000.tar") as tf:
        assert read_image_bytes(first) == tf.extractfile("000000001.jpg").read()
    lonely = items[-1]
    assert lonely.member is None and lonely.caption == "lonely caption"
    with pytest.raises(WorkbenchError, match="no image member"):
        read_image_bytes(lonely)


@needs_rclip
def test_a_table_of_paths(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "x.jpg").write_bytes((RCLIP / "cat.jpg").read_bytes())
    pq.write_table(pa.table({"image_path": ["img/x.jpg", f"file://{RCLIP / 'tree.webp'}", "img/gone.jpg"],
                             "caption": ["one", None, "three"], "uid": ["a" * 32, "b" * 32, "c" * 32]}),
                   tmp_path / "list.parquet")
    items = list_images(tmp_path / "list.parquet")
    assert [it.caption for it in items] == ["one", "tree", "three"]
    assert items[0].path == str(tmp_path / "img" / "x.jpg") and items[1].path == str(RCLIP / "tree.webp")
    assert items[0].meta["uid"] == "a" * 32
    with pytest.raises(WorkbenchError, match="image file not found"):
        read_image_bytes(items[2])
    (tmp_path / "remote.csv").write_text("url,caption\nhttps://example.invalid/a.jpg,x\n")
    with pytest.raises(WorkbenchError, match="row 0.*remote URL"):
        list_images(tmp_path / "remote.csv")
    (tmp_path / "nopath.csv").write_text("caption\nx\n")
    with pytest.raises(LayoutError, match="no image path column"):
        list_images(tmp_path / "nopath.csv")


@needs_rclip
def test_fingerprint_follows_the_files(tmp_path):
    (tmp_path / "a.jpg").write_bytes((RCLIP / "cat.jpg").read_bytes())
    before = fingerprint(list_images(tmp_path))
    assert fingerprint(list_images(tmp_path)) == before
    (tmp_path / "a.jpg").write_bytes((RCLIP / "cat.jpg").read_bytes() + b"\0")
    assert fingerprint(list_images(tmp_path)) != before
