"""One harness for the bad-input corpus: a refused command ends with one clear line and changes nothing.

``refused(argv, names=..., sources=..., dst=...)`` runs the CLI in this process (fast: no interpreter
start per case) and asserts, for every case alike:

- the documented exit code (2 unless told), and nothing on stdout;
- exactly one line on stderr, starting ``error:``, naming every string in ``names`` (a file name,
  ``row 7``, ...), with no traceback (an exception escaping ``main`` fails the test with it);
- every file under ``sources`` has the same bytes as before (and no file was added or removed);
- ``dst`` is absent afterwards, or, when it existed before, holds exactly what it held.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
from pathlib import Path

from workbench.cli.main import main


def tree_digest(root) -> dict[str, str]:
    """relative path -> sha256 of every file under root (a file: itself), symlinks not followed."""
    root = Path(root)
    if not root.exists() and not root.is_symlink():
        return {}
    if root.is_file():
        return {root.name: hashlib.sha256(root.read_bytes()).hexdigest()}
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_symlink():
            out[str(p.relative_to(root))] = "link:" + str(p.readlink())
        elif p.is_file():
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
        elif p.is_dir():
            out[str(p.relative_to(root)) + "/"] = "dir"
    return out


def run_cli(argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def refused(argv, names=(), sources=(), dst=None, code: int = 2, ignore_cache: bool = True) -> str:
    """Run argv, assert the refusal contract above; returns the error line.

    ignore_cache: a source's score cache (``.workbench/``) may be written by a command that got as far as
    scoring; it is not the source's data, so it is left out of the unchanged-bytes check.
    """
    def snap(p):
        d = tree_digest(p)
        return {k: v for k, v in d.items() if not (ignore_cache and k.split("/")[0] == ".workbench")}

    before = {str(s): snap(s) for s in sources}
    dst_before = None if dst is None else (snap(dst) if Path(dst).exists() else None)
    rc, out, err = run_cli(argv)
    lines = [x for x in err.splitlines() if x.strip()]
    assert rc == code, f"exit {rc}, wanted {code}; stderr: {err!r}"
    assert "Traceback" not in err, err
    assert len(lines) == 1, f"wanted one line on stderr, got {lines!r}"
    assert lines[0].startswith("error: "), lines[0]
    for n in names:
        assert str(n) in lines[0], f"{n!r} not named in {lines[0]!r}"
    assert out == "", f"stdout should be empty on a refusal: {out!r}"
    for s in sources:
        assert snap(s) == before[str(s)], f"source {s} changed"
    if dst is not None:
        if dst_before is None:
            assert not Path(dst).exists(), f"{dst} was created: {tree_digest(dst)}"
        else:
            assert snap(dst) == dst_before, f"{dst} changed"
    return lines[0]
