"""The sample projects stage-3 conversations run on: names from large pools, disjoint between the
splits, never an eval fixture's name, never a module that would shadow the standard library."""

from __future__ import annotations

import ast
import importlib.util
import sys

from trainer.data.tool_projects import FIXTURES, build_projects, identifier_pool


def _fixture_names() -> set[str]:
    return {node.name for path in FIXTURES.rglob("*.py") for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, (ast.FunctionDef, ast.ClassDef))}


def test_identifier_pools_are_large_and_disjoint_between_the_splits():
    for kind in ("function", "module"):
        train, heldout = set(identifier_pool("train", kind)), set(identifier_pool("heldout", kind))
        assert len(train) > 300 and len(heldout) > 50, kind
        assert not train & heldout
    functions = set(identifier_pool("train")) | set(identifier_pool("heldout"))
    assert {"cart_total", "longest_word", "days_in_month"} <= _fixture_names()
    assert not functions & _fixture_names()  # no end-to-end task is ever trained on
    assert not any(name.startswith("test") for name in functions)  # pytest would collect it


def test_module_names_never_shadow_an_importable_module():
    for name in identifier_pool("train", "module") + identifier_pool("heldout", "module"):
        assert name not in sys.stdlib_module_names and importlib.util.find_spec(name) is None, name


def test_projects_use_both_pools_and_their_tests_name_each_function(tmp_path):
    projects = build_projects(tmp_path, "train", 12, seed=5)
    pool = set(identifier_pool("train"))
    names = [f.name for p in projects for f in p.functions]
    assert any(n in pool for n in names) and any(n not in pool for n in names)
    for project in projects:
        tests = "".join((project.root / path).read_text() for path in project.test_files)
        assert all(f"def test_{f.name}()" in tests for f in project.functions)
        assert len({f.name for f in project.functions}) == len(project.functions)
        for function in project.functions:  # the recorded line is the def's line
            lines = (project.root / function.path).read_text().splitlines()
            assert lines[function.line - 1].startswith(f"def {function.name}("), function


def test_layouts_vary_so_counts_and_modules_must_be_read(tmp_path):
    projects = build_projects(tmp_path, "train", 24, seed=3)
    python_files = {sum(f.endswith(".py") for f in p.files()) for p in projects}
    modules = {len(p.module_paths()) for p in projects}
    assert len(python_files) >= 4 and modules == {1, 2, 3}
    assert any(not p.stdlib_files for p in projects) and any(len(p.stdlib_files) >= 2 for p in projects)
