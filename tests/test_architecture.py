"""The package's shape: stage sub-packages whose imports never form a cycle.

The import graph is built from the source with ``ast`` and counts every import, those inside
functions included (a lazy import is still a dependency: it only hides a cycle until it runs).
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "workbench"
STAGES = ("io", "models", "scoring", "curation", "map", "papers", "export", "demo", "cli")


def modules() -> dict[str, Path]:
    out = {}
    for p in PACKAGE.rglob("*.py"):
        name = ".".join(p.relative_to(REPO).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = p
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the workbench modules it imports (a name imported from a package that is a
    module of it counts as that module)."""
    mods = modules()
    graph = {m: set() for m in mods}
    for m, p in mods.items():
        pkg = m if p.name == "__init__.py" else m.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(p.read_text(), str(p))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                    base = ".".join(parts + ([base] if base else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            for t in targets:
                while t and t not in mods:
                    t = t.rsplit(".", 1)[0] if "." in t else ""
                if t and t != m:
                    graph[m].add(t)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def test_no_import_cycles_counting_imports_inside_functions():
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_stages_are_folders_and_the_top_level_holds_no_stage_code():
    for stage in STAGES:
        assert (PACKAGE / stage / "__init__.py").is_file(), stage
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert top == ["__init__.py", "__main__.py", "engine.py", "errors.py"], top


def test_the_library_never_imports_its_faces():
    for m, targets in import_graph().items():
        if not m.startswith("workbench.cli") and m != "workbench.__main__":  # `python -m workbench` is the CLI
            assert not any(t.startswith("workbench.cli") for t in targets), m
    for p in PACKAGE.rglob("*.py"):
        tree = ast.parse(p.read_text())
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and not n.level]
        assert not any(x == "widgets" or x.startswith("widgets.") for x in names), p


def test_public_names_import_from_the_top_and_stay_light():
    code = ("import sys, workbench\n"
            "from workbench import (open_collection, Recipe, apply, Live, Workspace, write_subset, load_head,\n"
            "                       load_encoder, text_encoder, compute, sample, validate, verify)\n"
            "from workbench.export import export\n"
            "assert callable(export) and callable(apply) and callable(open_collection)\n"
            "assert 'torch' not in sys.modules, 'importing the public names loaded torch'\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=120)


MAX_MODULE_LINES = 600


def test_no_module_is_over_600_lines():
    over = {str(p.relative_to(REPO)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not over, over


def test_the_models_never_import_the_demo():
    """The demo world's text encoder registers itself (workbench.models.prompts.register_text_encoder);
    the models stage names it only as a string in TEXT_ENCODER_PROVIDERS."""
    for m, targets in import_graph().items():
        if m.startswith("workbench.models"):
            assert not any(t == "workbench.demo" or t.startswith("workbench.demo.") for t in targets), m
