"""Project tools on the host: read/list/search (confined, .gitignore-aware), analysis, docs search,
and writes that happen only with approval, with a backup and undo."""

from __future__ import annotations

import pytest

from sandbox import SandboxError
from sandbox.tools import Approval, ToolContext, call_tool
from sandbox.tools.backup import list_backups, undo


@pytest.fixture
def ctx(sample_project, tmp_path):
    return ToolContext(project=sample_project, cache_dir=tmp_path / "cache")


def test_read_file_with_line_numbers_and_ranges(ctx):
    result = call_tool("read_file", {"path": "calc/ops.py", "start_line": 5, "max_lines": 2}, ctx)
    assert result.ok
    assert result.data["content"] == "     5\tdef divide(a, b):\n     6\t    return a / b"
    assert result.data["total_lines"] == 13 and result.data["truncated"] is True


def test_read_file_refuses_a_symlink_out_of_the_project(ctx, sample_project, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET")
    (sample_project / "innocent.txt").symlink_to(secret)
    result = call_tool("read_file", {"path": "innocent.txt"}, ctx)
    assert not result.ok and "points outside the project" in result.error
    assert "TOP SECRET" not in result.to_json()


def test_list_files_respects_gitignore_and_skips_git(ctx, sample_project):
    (sample_project / "calc" / ".gitignore").write_text("*.tmp\n!keep.tmp\n")
    (sample_project / "calc" / "scratch.tmp").write_text("x")
    (sample_project / "calc" / "keep.tmp").write_text("x")
    files = call_tool("list_files", {}, ctx).data["files"]
    assert files == [".gitignore", "README.md", "calc/.gitignore", "calc/__init__.py", "calc/keep.tmp",
                     "calc/ops.py", "tests/test_ops.py", "tools.py"]  # fmt: skip
    assert call_tool("list_files", {"pattern": "*.py", "path": "calc"}, ctx).data["files"] == ["calc/__init__.py", "calc/ops.py"]
    everything = call_tool("list_files", {"include_ignored": True}, ctx).data["files"]
    assert "debug.log" in everything and "build/generated.py" in everything
    assert not any(f.startswith(".git/") for f in everything)


def test_search_code_finds_matches_and_skips_ignored_files(ctx):
    result = call_tool("search_code", {"pattern": "needle"}, ctx)
    assert [(m["path"], m["line"]) for m in result.data["matches"]] == [("README.md", 2)]
    found = call_tool("search_code", {"pattern": r"def \w+\(a, b\)", "glob": "*.py", "context_lines": 1}, ctx)
    assert [(m["path"], m["line"]) for m in found.data["matches"]] == [("calc/ops.py", 1), ("calc/ops.py", 5)]
    assert found.data["matches"][1]["after"] == ["    return a / b"]
    plain = call_tool("search_code", {"pattern": "a / b", "fixed_string": True, "ignore_case": True}, ctx)
    assert plain.data["count"] == 1


def test_search_code_survives_a_catastrophic_pattern(ctx, sample_project, monkeypatch):
    import sandbox.tools.search_code as module

    monkeypatch.setattr(module, "BUDGET_S", 0.5)
    (sample_project / "long.txt").write_text("a" * 60 + "\n")
    result = call_tool("search_code", {"pattern": "(a|aa)+b", "path": "long.txt"}, ctx)
    assert result.ok and "stopped" in result.data


def test_analyze_code_snippet_reports_each_kind_with_lines(ctx):
    code = (
        "import os\n"
        "import subprocess\n"
        "def run(cmd):\n"
        "    return subprocess.call(cmd, shell=True)\n"
        "def branchy(n):\n" + "".join(f"    if n == {i}:\n        return {i}\n" for i in range(12)) + "    return eval(n)\n"
    )
    result = call_tool("analyze_code", {"code": code}, ctx)
    assert result.ok
    found = {(f["tool"], f["code"], f["line"]) for f in result.data["findings"]}
    assert ("ruff", "F401", 1) in found  # unused import os
    assert ("bandit", "B602", 4) in found  # shell=True
    assert ("bandit", "B307", 30) in found  # eval
    assert ("radon", "CC-C", 5) in found  # complexity 13
    assert result.data["most_complex"][0]["name"] == "branchy"


def test_analyze_code_syntax_error_and_project_files(ctx):
    broken = call_tool("analyze_code", {"code": "def f(:\n  pass\n", "checks": ["syntax"]}, ctx)
    assert broken.data["findings"][0]["tool"] == "syntax" and broken.data["findings"][0]["line"] == 1
    project = call_tool("analyze_code", {"path": "."}, ctx)
    files = {f["file"] for f in project.data["findings"]}
    assert "tools.py" in files and not any(f.startswith("build/") for f in files)
    assert project.data["files"] == 4  # calc/__init__.py, calc/ops.py, tests/test_ops.py, tools.py


def test_search_docs_finds_standard_library_docs(ctx):
    exact = call_tool("search_docs", {"query": "json.dumps"}, ctx)
    assert exact.ok and exact.data["results"][0]["name"] == "json.dumps"
    assert "JSON" in exact.data["results"][0]["summary"]
    words = call_tool("search_docs", {"query": "create a temporary directory", "k": 3}, ctx)
    assert "tempfile.TemporaryDirectory" in [r["name"] for r in words.data["results"]]
    scoped = call_tool("search_docs", {"query": "join", "module": "posixpath"}, ctx)
    assert all(r["name"].startswith("posixpath") for r in scoped.data["results"])
    none = call_tool("search_docs", {"query": "zzqxv"}, ctx)
    assert not none.ok and "nothing in the documentation" in none.error


class Approver:
    def __init__(self, answer: bool) -> None:
        self.answer = answer
        self.requests: list[Approval] = []

    def __call__(self, request: Approval) -> bool:
        self.requests.append(request)
        return self.answer


def test_writes_need_approval_and_nothing_changes_without_it(ctx, sample_project, snapshot):
    before = snapshot(sample_project)
    no_prompt = call_tool("write_file", {"path": "calc/ops.py", "content": "oops\n"}, ctx)
    assert not no_prompt.ok and "needs the user's approval" in no_prompt.error
    ctx.approve = Approver(False)
    declined = call_tool("write_file", {"path": "new.py", "content": "x = 1\n"}, ctx)
    assert not declined.ok and "declined" in declined.error
    assert ctx.approve.requests[0].diff.startswith("--- /dev/null\n+++ b/new.py")
    ctx.approve = Approver(True)
    for path in (".git/HEAD", ".git/hooks/pre-commit", "../escape.py", ".assistant/backups/x"):
        refused = call_tool("write_file", {"path": path, "content": "x"}, ctx)
        assert not refused.ok, path
    assert ctx.approve.requests == []  # refused before anyone was asked
    assert snapshot(sample_project) == before


def test_approved_write_is_backed_up_and_undone(ctx, sample_project):
    original = (sample_project / "calc" / "ops.py").read_text()
    ctx.approve = Approver(True)
    result = call_tool("write_file", {"path": "calc/ops.py", "content": original.replace("a + b", "b + a")}, ctx)
    assert result.ok and "rewrite calc/ops.py" in result.data["summary"]
    assert "-    return a + b\n+    return b + a" in ctx.approve.requests[0].diff
    created = call_tool("write_file", {"path": "docs/notes.md", "content": "hello\n"}, ctx)
    assert created.ok and (sample_project / "docs" / "notes.md").read_text() == "hello\n"
    assert [m["tool"] for m in list_backups(sample_project)] == ["write_file", "write_file"]
    undo(sample_project)
    assert not (sample_project / "docs" / "notes.md").exists()
    undo(sample_project)
    assert (sample_project / "calc" / "ops.py").read_text() == original
    with pytest.raises(SandboxError, match="nothing to undo"):
        undo(sample_project)


def test_undo_refuses_when_the_file_changed_since(ctx, sample_project):
    ctx.approve = Approver(True)
    call_tool("write_file", {"path": "README.md", "content": "by the assistant\n"}, ctx)
    (sample_project / "README.md").write_text("edited by the user afterwards\n")
    with pytest.raises(SandboxError, match="changed after the assistant wrote it"):
        undo(sample_project)
    undo(sample_project, force=True)
    assert "needle" in (sample_project / "README.md").read_text()


PATCH = """\
--- a/calc/ops.py
+++ b/calc/ops.py
@@ -5,2 +5,4 @@
 def divide(a, b):
+    if b == 0:
+        return 0.0
     return a / b
--- /dev/null
+++ b/calc/extra.py
@@ -0,0 +1,2 @@
+def double(x):
+    return 2 * x
"""


def test_apply_patch_checks_asks_writes_and_undoes(ctx, sample_project, snapshot):
    before = snapshot(sample_project)
    ctx.approve = Approver(True)
    result = call_tool("apply_patch", {"patch": PATCH}, ctx)
    assert result.ok, result.error
    assert "if b == 0:" in (sample_project / "calc" / "ops.py").read_text()
    assert (sample_project / "calc" / "extra.py").read_text() == "def double(x):\n    return 2 * x\n"
    assert ctx.approve.requests[0].paths == ["calc/ops.py", "calc/extra.py"]
    undo(sample_project)
    after = snapshot(sample_project)
    assert {k: v for k, v in after.items() if not k.startswith(".assistant")} == before


def test_apply_patch_that_does_not_match_is_rejected_before_asking(ctx, sample_project, snapshot):
    before = snapshot(sample_project)
    ctx.approve = Approver(True)
    stale = PATCH.replace(" def divide(a, b):", " def divide(x, y):")
    result = call_tool("apply_patch", {"patch": stale}, ctx)
    assert not result.ok and "hunk 1 of calc/ops.py does not match" in result.error
    garbage = call_tool("apply_patch", {"patch": "this is not a diff"}, ctx)
    assert not garbage.ok and "unified diff" in garbage.error
    assert ctx.approve.requests == []
    assert snapshot(sample_project) == before


def test_apply_patch_tolerates_line_drift(ctx, sample_project):
    ops = sample_project / "calc" / "ops.py"
    ops.write_text("# a header line\n# and another\n" + ops.read_text())
    ctx.approve = Approver(True)
    assert call_tool("apply_patch", {"patch": PATCH.split("--- /dev/null")[0]}, ctx).ok
    assert "    if b == 0:\n        return 0.0\n    return a / b\n" in ops.read_text()
