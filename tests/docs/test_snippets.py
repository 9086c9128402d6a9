"""Every python and shell snippet of README.md and docs/*.md runs against the synthetic demo world.

Each page gets its own folder holding a copy of one 20,000-row demo world (``demo_world/``, the
world ``workbench demo --rows 20000`` builds), built once per session; the page's python blocks
run in order in one namespace with that folder as the working directory, and the lines of its
shell blocks that start with ``workbench`` or ``python`` run there with this interpreter's bin
folder first on PATH. A failure names the file and line of the snippet. The words a fence may
carry (``no-run``, ``ci``, ``needs-heads``, ``file=NAME``) are described in tests/docs/docsnippets.py
and docs/contributing.md.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

from conftest import REPO, SHARED
from docsnippets import collect_pages, shell_commands

DEMO_ROWS = 20_000
HEADS = SHARED / "data" / "heads"
SHELL_TIMEOUT_S = 300

PAGES = collect_pages(REPO)
# the blocks that run, and the files (file=NAME) they read
CASES = [(page, k) for page, blocks in PAGES.items() for k, b in enumerate(blocks) if b.kind or "file" in b.options]


def _case_id(case) -> str:
    page, k = case
    return PAGES[page][k].where(REPO)


@pytest.fixture(scope="session")
def docs_world(tmp_path_factory) -> Path:
    from workbench.demo.build import build_demo_world

    # the parameters `workbench demo --rows 20000` uses, so that command reopens this world
    return build_demo_world(tmp_path_factory.mktemp("docs-demo") / "demo_world", rows=DEMO_ROWS, seed=0)


class Page:
    """One page's working folder and python namespace; a failed block makes the later ones fail."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.namespace: dict = {"__name__": "__main__"}
        self.failed: str | None = None


@pytest.fixture(scope="module")
def pages(docs_world, tmp_path_factory):
    made: dict[str, Page] = {}

    def get(page: str) -> Page:
        if page not in made:
            folder = tmp_path_factory.mktemp("page")
            # hard links: nothing writes into a shard (score caches and exports are new files)
            shutil.copytree(docs_world, folder / "demo_world", copy_function=_link_or_copy)
            made[page] = Page(folder)
        return made[page]

    return get


def _link_or_copy(src, dst):
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _env() -> dict:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env.setdefault("WORKBENCH_OFFLINE", "1")
    return env


def _run_python(snippet, page: Page, where: str) -> None:
    # padded so that a traceback's line numbers are the markdown file's own
    code = compile("\n" * snippet.line + snippet.code, str(snippet.path.relative_to(REPO)), "exec")
    cwd = os.getcwd()
    os.chdir(page.folder)
    try:
        exec(code, page.namespace)
    except Exception:
        raise AssertionError(f"{where}: the python snippet failed\n{traceback.format_exc(limit=-6)}") from None
    finally:
        os.chdir(cwd)


def _run_shell(snippet, page: Page, where: str) -> None:
    for offset, cmd in shell_commands(snippet.code):
        line = snippet.line + 1 + offset
        proc = subprocess.run(["bash", "-c", "set -o pipefail; " + cmd], cwd=page.folder, env=_env(),
                              capture_output=True, text=True, timeout=SHELL_TIMEOUT_S)
        if proc.returncode != 0:
            raise AssertionError(f"{snippet.path.relative_to(REPO)}:{line}: `{cmd}` exited with "
                                 f"{proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}")


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_snippet(case, pages):
    page_name, k = case
    snippet = PAGES[page_name][k]
    where = snippet.where(REPO)
    if "file" in snippet.options:   # a file later blocks read (a recipe, a word list)
        (pages(page_name).folder / snippet.options["file"]).write_text(snippet.code, encoding="utf-8")
    if snippet.kind is None:
        return
    if "ci" in snippet.words:
        pytest.skip("marked ci: what CI itself runs (.ci/run)")
    if "no-run" in snippet.words:
        first = snippet.code.lstrip().splitlines()[0] if snippet.code.strip() else ""
        why = first.lstrip("# ").strip() if first.startswith("#") else "needs what a test machine lacks"
        pytest.skip(f"{where}: marked no-run: {why}")
    if "needs-heads" in snippet.words and not HEADS.is_dir():
        pytest.skip(f"needs the third-party head files, not found at {HEADS} (set WORKBENCH_SHARED)")
    page = pages(page_name)
    if page.failed:
        pytest.fail(f"{where}: not run, an earlier snippet of this page failed ({page.failed})", pytrace=False)
    try:
        (_run_python if snippet.kind == "python" else _run_shell)(snippet, page, where)
    except AssertionError as exc:
        page.failed = where
        message = str(exc)
    except BaseException:
        page.failed = where
        raise
    else:
        return
    pytest.fail(message, pytrace=False)


def test_every_page_is_collected_and_the_readme_commands_are_ci_itself():
    names = set(PAGES)
    assert "README.md" in names
    assert {"docs/getting-started.md", "docs/recipes.md", "docs/scores.md", "docs/cli.md"} <= names
    # the README's two commands are one block marked `ci`; .ci/run runs the second verbatim
    readme_ci = [s for s in PAGES["README.md"] if "ci" in s.words]
    assert len(readme_ci) == 1, [s.where(REPO) for s in readme_ci]
    commands = readme_ci[0].code.strip().splitlines()
    assert len(commands) == 2 and commands[0].endswith(".venv/bin/workbench demo"), commands
    ci_script = (REPO / ".ci" / "run").read_text().strip().splitlines()
    assert ci_script[-1] == commands[1], (ci_script[-1], commands[1])
    # no other page hides a snippet behind `ci`, save the suite's own command
    others = [s for page, blocks in PAGES.items() if page != "README.md" for s in blocks if "ci" in s.words]
    assert all(s.code.strip() == ".venv/bin/python -m pytest" for s in others), [s.where(REPO) for s in others]
