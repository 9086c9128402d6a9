import json

import pytest

from workbench.errors import WriteError
from workbench.io.staging import begin_plan, check_destination, journal, staged_task, write_manifest


def _write(name, data):
    def write(tmp):
        (tmp / "d").mkdir()
        (tmp / "d" / name).write_bytes(data)
        return [{"path": f"d/{name}", "rows": 1}]
    return write


def test_a_part_is_published_and_journalled(tmp_path):
    dst = tmp_path / "out"
    assert check_destination(dst, keep=False) == "new" and not dst.exists()  # an early check leaves nothing behind
    assert check_destination(dst, keep=True) == "new" and dst.is_dir()
    digest, done = begin_plan(dst, "new", {"a": 1})
    assert done is None and (dst / ".staging" / "plan.json").is_file()
    rec = staged_task(dst, "t-1", _write("x.bin", b"abc"), {"rows": 1})
    assert (dst / "d" / "x.bin").read_bytes() == b"abc" and rec["files"][0]["bytes"] == 3
    assert journal(dst, "t-1")["files"] == rec["files"]
    (dst / "d" / "x.bin").write_bytes(b"abcd")  # changed since: the part is not trusted any more
    assert journal(dst, "t-1") is None
    assert check_destination(dst) == "unfinished"
    with pytest.raises(WriteError, match="different plan.*differs in: a"):
        begin_plan(dst, "unfinished", {"a": 2})
    assert begin_plan(dst, "unfinished", {"a": 1})[0] == digest
    write_manifest(dst, {"plan": digest, "files": []})
    assert not (dst / ".staging").exists() and check_destination(dst) == "finished"
    assert begin_plan(dst, "finished", {"a": 1})[1] == json.loads((dst / "manifest.json").read_text())
    with pytest.raises(WriteError, match="finished"):
        begin_plan(dst, "finished", {"a": 3})


def test_a_failing_part_leaves_no_final_file(tmp_path):
    dst = tmp_path / "out"
    check_destination(dst)
    begin_plan(dst, "new", {})

    def fails(tmp):
        _write("y.bin", b"x")(tmp)
        raise OSError(28, "No space left on device")

    with pytest.raises(WriteError, match="No space left"):
        staged_task(dst, "t-2", fails)
    assert not (dst / "d").exists() and journal(dst, "t-2") is None
    assert not list((dst / ".staging" / "tmp").glob("*"))


def test_refusals(tmp_path):
    (tmp_path / "src").mkdir()
    with pytest.raises(WriteError, match="source"):
        check_destination(tmp_path / "src" / "in", [tmp_path / "src"])
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("x")
    with pytest.raises(WriteError, match="not empty"):
        check_destination(tmp_path / "busy")
    (tmp_path / "f").write_text("x")
    with pytest.raises(WriteError, match="not a folder|not writable"):
        check_destination(tmp_path / "f")
