"""Every notebook runs top to bottom on a small demo world, and is committed with outputs cleared."""
import json
import os
import shutil
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert [p.name for p in NOTEBOOKS][:1] == ["01_quickstart.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs(path):
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [] and cell.get("execution_count") is None, f"{path.name}: clear outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_runs_top_to_bottom(path, tmp_path, monkeypatch):
    import papermill

    work = tmp_path / "nb"
    shutil.copytree(path.parent, work, ignore=shutil.ignore_patterns("demo_world", ".ipynb_checkpoints"))
    monkeypatch.setenv("PYTHONPATH", str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = tmp_path / "artifacts" / path.name
    out.parent.mkdir()
    papermill.execute_notebook(str(work / path.name), str(out), cwd=str(work), kernel_name="python3",
                               parameters={"demo_dir": str(tmp_path / "world"), "demo_rows": 6000},
                               progress_bar=False, execution_timeout=600)
    executed = nbformat.read(out, as_version=4)
    errors = [o for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    art = REPO / "test-artifacts" / "notebooks"
    art.mkdir(parents=True, exist_ok=True)
    shutil.copy(out, art / path.name)  # the executed notebook, kept for inspection


TEACHING = ["02_laion400m", "03_laion5b_safety", "04_audit", "05_clip_dpo", "06_flyt_sampling", "07_datacomp_baselines"]


def test_the_teaching_notebooks_exist_say_what_they_mirror_and_take_parameters():
    for name in TEACHING:
        nb = nbformat.read(REPO / "notebooks" / f"{name}.ipynb", as_version=4)
        first = nb.cells[0]
        assert first.cell_type == "markdown" and "**Mirrors**" in first.source and "demo world" in first.source, name
        params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(params) == 1, name
        for p in ("collection_path", "demo_dir", "demo_rows", "model", "pretrained", "figures_dir", "seed"):
            assert f"\n{p} = " in "\n" + params[0].source, (name, p)


def test_the_readme_shows_figures_that_exist():
    import re

    readme = (REPO / "README.md").read_text()
    figures = re.findall(r"\]\((docs/figures/[^)]+\.png)\)", readme)
    assert len(figures) >= 6
    for f in figures:
        assert (REPO / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f
    # every figure a notebook writes is one the README shows
    written = set()
    for name in TEACHING:
        src = (REPO / "notebooks" / f"{name}.ipynb").read_text()
        written |= set(re.findall(r'save_png\([^,]+, \\"([a-z0-9_]+)\\"', src))
    assert written == {Path(f).stem for f in figures}
