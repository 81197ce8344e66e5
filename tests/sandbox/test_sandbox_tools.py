"""The model's tools on a sample project: tests run, lint findings returned, a traceback diagnosed."""

from __future__ import annotations

import pytest

from sandbox.factory import open_sandbox
from sandbox.tools import ToolContext, call_tool


@pytest.fixture
def ctx(backend_settings, sample_project, tmp_path):
    context = ToolContext(
        project=sample_project,
        sandbox_factory=lambda: open_sandbox(backend_settings, sample_project),
        cache_dir=tmp_path / "cache",
    )
    yield context
    if context.sandbox is not None:
        context.sandbox.close()


def test_execute_python_and_bash(ctx):
    python = call_tool("execute_python", {"code": "import sys; print(sum(range(10))); print('warn', file=sys.stderr)"}, ctx)
    assert python.ok and python.data["stdout"] == "45\n" and python.data["stderr"] == "warn\n"
    bash = call_tool("execute_bash", {"command": "ls calc; exit 3"}, ctx)
    assert not bash.ok and bash.data["exit_code"] == 3 and "ops.py" in bash.data["stdout"]
    assert bash.error == "exited with status 3"
    slow = call_tool("execute_bash", {"command": "sleep 5", "timeout": 0.5}, ctx)
    assert not slow.ok and slow.data["timed_out"] and "timeout" in slow.error


def test_run_tests_counts_and_failing_tracebacks(ctx, sample_project, snapshot):
    before = snapshot(sample_project)
    result = call_tool("run_tests", {}, ctx)
    assert not result.ok
    assert result.data["counts"] == {"passed": 2, "failed": 2, "errors": 0, "skipped": 0, "total": 4}
    failures = {f["test"]: f for f in result.data["failures"]}
    assert set(failures) == {"tests/test_ops.py::test_mean_of_nothing", "tests/test_ops.py::test_add_wrong"}
    zero = failures["tests/test_ops.py::test_mean_of_nothing"]
    assert "ZeroDivisionError" in zero["message"] + zero["traceback"]
    assert "calc/ops.py:6" in zero["traceback"] and zero["line"] == 9
    assert "assert 4 == 5" in failures["tests/test_ops.py::test_add_wrong"]["traceback"]
    assert "test_add_wrong" in result.data["output_tail"] and "junit" not in result.data["output_tail"]  # our report file is ours
    only = call_tool("run_tests", {"path": "tests/test_ops.py", "keyword": "test_add and not wrong"}, ctx)
    assert only.ok and only.data["counts"]["passed"] == 1 and only.data["counts"]["total"] == 1
    assert snapshot(sample_project) == before  # no cache, no __pycache__, no report in the project


def test_debug_code_diagnoses_a_traceback_with_source_and_locals(ctx):
    code = "def ratio(hits, total):\n    share = hits / total\n    return share\n\nitems = []\nprint(ratio(3, len(items)))\n"
    result = call_tool("debug_code", {"code": code}, ctx)
    assert result.ok
    data = result.data
    assert data["outcome"] == "exception"
    assert data["exception"]["type"] == "ZeroDivisionError"
    assert data["location"] == {"file": "snippet.py", "line": 2, "function": "ratio", "code": "share = hits / total"}
    assert data["locals_at_failure"] == {"hits": "3", "total": "0"}
    assert [c["line"] for c in data["context"] if c["failing"]] == [2]
    assert [f["function"] for f in data["frames"]] == ["<module>", "ratio"]
    assert "divisor is zero" in data["hint"]


def test_debug_code_on_a_project_file_maps_frames_onto_the_project(ctx):
    result = call_tool("debug_code", {"code": "import sys\nsys.path.insert(0, '/workspace')\nfrom calc.ops import mean\nmean([])\n"}, ctx)
    data = result.data
    assert data["location"]["file"] == "calc/ops.py" and data["location"]["line"] == 6
    assert data["location"]["function"] == "divide"
    assert data["locals_at_failure"] == {"a": "0", "b": "0"}
    assert any(c["text"].strip() == "return a / b" and c["failing"] for c in data["context"])


def test_debug_code_reports_syntax_errors_and_clean_runs(ctx):
    syntax = call_tool("debug_code", {"code": "def broken(:\n    pass\n"}, ctx)
    assert syntax.data["outcome"] == "syntax_error" and syntax.data["location"]["line"] == 1
    clean = call_tool("debug_code", {"code": "print('fine')"}, ctx)
    assert clean.data["outcome"] == "ok" and clean.data["stdout"] == "fine\n"
