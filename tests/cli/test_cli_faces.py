"""The ``workbench`` command is a face with no logic: each verb parses its arguments, calls the
library and prints. Checked from the source with ``ast``: which functions each cli module defines
(verbs, argument helpers, printing helpers, listed here by name), that no cli module imports polars
or numpy at module level, that none writes files itself (``write_parquet``, ``os.replace``), and
that each stays small."""
from __future__ import annotations

import ast
from pathlib import Path

CLI = Path(__file__).resolve().parents[2] / "workbench" / "cli"

VERBS = {
    "collections.py": {"cmd_info", "cmd_validate", "cmd_verify", "cmd_demo"},
    "curate.py": {"cmd_apply", "cmd_diff", "cmd_score"},
    "write.py": {"cmd_export", "cmd_embed"},
    "papers.py": {"cmd_sample", "cmd_pairs", "cmd_audit", "cmd_mix"},
    "search.py": {"cmd_neighbors", "cmd_index", "cmd_map"},
    "fetch.py": {"cmd_fetch"},
    "heads.py": {"cmd_heads_fetch", "cmd_heads_list"},
}
ARGUMENT_HELPERS = {
    "common.py": {"open_from_args", "encoder_from_args", "tower_from_args", "show_progress", "load_recipe",
                  "recipe_text"},
    "parser.py": {"build_parser", "_engine_args", "_model_args", "_version"},
    # main: error handling, exit codes, a closed stdout pipe
    "main.py": {"main", "_main", "_flush_stdout", "_stdout_closed", "_stdout_to_devnull"},
}
PRINTING_HELPERS = {
    "collections.py": {"_validate_json"},
    "curate.py": {"_print_apply", "_print_clusters", "_printable", "_print_diff", "_print_score"},
    "write.py": {"_print_embed"},
    "papers.py": {"_print_audit", "_print_mix"},
    "search.py": {"_print_progress"},
}
ALLOWED = {name: VERBS.get(name, set()) | ARGUMENT_HELPERS.get(name, set()) | PRINTING_HELPERS.get(name, set())
           for name in set(VERBS) | set(ARGUMENT_HELPERS) | set(PRINTING_HELPERS) | {"__init__.py"}}
# a nested function is allowed only where a helper hands the library a loader to call when needed
NESTED = {("common.py", "encoder_from_args"): {"load"}}


def _files():
    files = sorted(CLI.glob("*.py"))
    assert {p.name for p in files} == set(ALLOWED), "a new cli module: list its functions in this test"
    return files


def _tree(p: Path) -> ast.Module:
    return ast.parse(p.read_text(), str(p))


def test_cli_modules_define_only_the_listed_functions():
    for p in _files():
        tree = _tree(p)
        top = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
        assert top == ALLOWED[p.name], (p.name, sorted(top ^ ALLOWED[p.name]))
        assert not [n for n in tree.body if isinstance(n, ast.ClassDef)], p.name
        for fn in (n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
            inner = {n.name for n in ast.walk(fn) if n is not fn and isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
            assert inner <= NESTED.get((p.name, fn.name), set()), (p.name, fn.name, inner)


def test_every_verb_of_the_parser_is_a_listed_verb():
    from workbench.cli import build_parser

    parser = build_parser()
    def verbs(p):  # the (file, function) of every verb, through nested verbs (`heads fetch`)
        sub = next((a for a in p._actions if a.choices and isinstance(a.choices, dict)), None)
        for s in (sub.choices.values() if sub else ()):
            f = s.get_default("func")
            yield from verbs(s) if f is None else [(f"{f.__module__.rsplit('.', 1)[1]}.py", f.__name__)]

    funcs = set(verbs(parser))
    listed = {(m, v) for m, verbs in VERBS.items() for v in verbs}
    assert funcs == listed


def test_no_cli_module_imports_polars_or_numpy_at_module_level():
    for p in _files():
        for n in _tree(p).body:
            names = [a.name for a in n.names] if isinstance(n, ast.Import) else \
                [n.module or ""] if isinstance(n, ast.ImportFrom) else []
            assert not any(x.split(".")[0] in ("polars", "numpy", "pyarrow") for x in names), (p.name, names)


def test_no_cli_module_writes_files_itself():
    for p in _files():
        for n in ast.walk(_tree(p)):
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute):
                where = (p.name, n.lineno, ast.unparse(n.func))
                assert n.func.attr not in ("write_parquet", "write_csv", "write_text", "write_bytes"), where
                is_os = isinstance(n.func.value, ast.Name) and n.func.value.id == "os"
                assert not (is_os and n.func.attr in ("replace", "rename")), where
            if isinstance(n, ast.ImportFrom) and n.module == "os":
                assert not {a.name for a in n.names} & {"replace", "rename"}, (p.name, n.lineno)
            if isinstance(n, ast.Name):
                assert n.id not in ("write_parquet_atomic", "write_atomic"), (p.name, n.lineno)


def test_cli_modules_stay_small():
    for p in _files():
        assert len(p.read_text().splitlines()) <= 300, p.name


def test_the_package_exports_main_and_build_parser():
    import workbench.cli as cli
    from workbench.cli.main import main

    assert cli.main is main and callable(cli.build_parser)
