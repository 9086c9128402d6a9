"""The docs site builds with ``mkdocs build --strict`` (every nav page there, no broken link or
anchor, the API reference generated from the docstrings), and the CLI reference names every verb
and option of the parser."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO


def test_the_site_builds_strictly(tmp_path):
    mkdocs = Path(sys.executable).parent / "mkdocs"
    if not mkdocs.exists():
        if shutil.which("mkdocs") is None:
            pytest.skip("mkdocs is not installed (it is in the dev extras: pip install -e '.[dev]')")
        mkdocs = Path(shutil.which("mkdocs"))
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    proc = subprocess.run([str(mkdocs), "build", "--strict", "-f", str(REPO / "mkdocs.yml"), "-d", str(tmp_path / "site")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    site = tmp_path / "site"
    for page in ("index.html", "getting-started/index.html", "real-data/index.html", "cli/index.html",
                 "ARCHITECTURE/index.html", "api/index.html"):
        assert (site / page).is_file(), page
    api = (site / "api" / "index.html").read_text()
    assert "open_collection" in api and "write_subset" in api   # generated from the docstrings
    assert (site / "figures" / "panel.png").is_file()
    # the snippet runner's fence words are dropped before rendering: every fence is highlighted code
    scores = (site / "scores" / "index.html").read_text()
    assert "needs-heads" not in scores and "no-run" not in scores
    assert scores.count('class="highlight"') >= 10


def _verbs():
    from workbench.cli.parser import build_parser

    def walk(parser, prefix):
        subs = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
        if not subs:
            yield prefix, parser
            return
        for name, sub in subs[0].choices.items():
            yield from walk(sub, prefix + [name])

    return list(walk(build_parser(), []))


def test_the_cli_reference_names_every_verb_and_option():
    page = (REPO / "docs" / "cli.md").read_text()
    missing = []
    for path, parser in _verbs():
        verb = " ".join(["workbench", *path])
        if f"`{verb} " not in page and f"`{verb}`" not in page:
            missing.append(verb)
            continue
        for action in parser._actions:
            for opt in action.option_strings:
                if opt in ("-h", "--help") or (opt.startswith("-") and not opt.startswith("--") and len(action.option_strings) > 1):
                    continue
                if opt not in page:
                    missing.append(f"{verb} {opt}")
    assert not missing, f"docs/cli.md does not mention: {missing}"
