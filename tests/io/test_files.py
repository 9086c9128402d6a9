"""workbench.io.files: whole-or-nothing writes and the one file digest."""
import hashlib

import polars as pl
import pytest

from workbench.io.files import sha256_file, write_atomic, write_parquet_atomic, write_text_atomic


def test_write_atomic_replaces_the_file_whole(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("old")
    assert write_atomic(p, lambda tmp: tmp.write_text("new")) == p
    assert p.read_text() == "new" and [x.name for x in tmp_path.iterdir()] == ["a.txt"]


def test_a_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("old")

    def half(tmp):
        tmp.write_text("half-writ")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(p, half, durable=True)
    assert p.read_text() == "old" and [x.name for x in tmp_path.iterdir()] == ["a.txt"]
    with pytest.raises(OSError):
        write_atomic(tmp_path / "b.txt", half)
    assert [x.name for x in tmp_path.iterdir()] == ["a.txt"]  # absent stays absent


def test_a_writer_that_writes_nothing_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="did not create"):
        write_atomic(tmp_path / "a.bin", lambda tmp: None)
    assert not list(tmp_path.iterdir())


def test_parquet_and_text_helpers(tmp_path):
    write_parquet_atomic(pl.DataFrame({"row": [0, 1]}), tmp_path / "x.parquet")
    assert pl.read_parquet(tmp_path / "x.parquet")["row"].to_list() == [0, 1]
    write_text_atomic(tmp_path / "t.txt", "héllo\n")
    assert (tmp_path / "t.txt").read_text(encoding="utf-8") == "héllo\n"
    write_atomic(tmp_path / "d.txt", lambda tmp: tmp.write_text("x"), durable=True)
    assert (tmp_path / "d.txt").read_text() == "x"


@pytest.mark.parametrize("size", [0, 1, (1 << 22) + 3])
def test_sha256_matches_hashlib(tmp_path, size):
    data = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
    p = tmp_path / "f.bin"
    p.write_bytes(data)
    assert sha256_file(p) == hashlib.sha256(data).hexdigest() == sha256_file(p, chunk=7)


def test_the_old_digest_names_are_the_one_helper(tmp_path):
    from workbench.io.writer import sha256_file as writer_sha
    from workbench.models.prompts import file_sha256

    p = tmp_path / "f.bin"
    p.write_bytes(b"abc")
    assert writer_sha(p) == file_sha256(p) == hashlib.sha256(b"abc").hexdigest()


def test_write_atomic_creates_a_missing_folder_and_names_a_file_in_the_way(tmp_path):
    from workbench.errors import WriteError
    from workbench.io.files import write_text_atomic

    assert write_text_atomic(tmp_path / "new" / "deeper" / "r.yaml", "x").read_text() == "x"
    (tmp_path / "afile").write_text("")
    with pytest.raises(WriteError, match="afile"):
        write_text_atomic(tmp_path / "afile" / "r.yaml", "x")
