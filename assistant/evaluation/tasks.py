"""The end-to-end eval set: tasks over the fixture projects in tests/eval_fixtures, each with a
programmatic oracle, run through the real agent loop (``AgentSession``) and the real sandbox.

Oracles never trust the model: expected values are computed from the fixture code itself (the
function is imported and called in a subprocess), file changes are checked on disk, and "fix the
failing test" is checked by running the project's tests in the sandbox after the turn.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# 2: 'where is X defined' needs X, its file and (if stated) the right line
# 3: 'what does f(x) return' fails an answer that calls the value another function's ('g(x) returns 3')
EVAL_SET_VERSION = 3
FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "eval_fixtures"


@dataclass
class Outcome:
    """What a task's oracle sees after the turn."""

    answer: str
    project: Path  # the task's working copy, after the turn
    tool_calls: list[str] = field(default_factory=list)
    stop_reason: str = "answer"


@dataclass(frozen=True)
class Task:
    id: str
    project: str  # a folder under tests/eval_fixtures
    prompt: str
    oracle: Callable[[Outcome, OracleContext], bool]
    kind: str  # what the oracle checks, for the report


class OracleContext:
    """Computes expected values from the pristine fixtures (cached) and runs checks in the sandbox."""

    def __init__(self, sandbox_settings: Any, fixtures: Path = FIXTURES) -> None:
        self.sandbox_settings = sandbox_settings
        self.fixtures = fixtures
        self._cache: dict[str, Any] = {}

    def call_value(self, project: str, module: str, expression: str) -> Any:
        """repr-free value of ``expression`` evaluated with the fixture project's ``module`` imported."""
        key = f"{project}|{module}|{expression}"
        if key not in self._cache:
            code = f"from {module} import *\nimport json\nprint(json.dumps({expression}))"
            env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}  # leave the versioned fixtures untouched
            done = subprocess.run([sys.executable, "-c", code], cwd=self.fixtures / project, capture_output=True,
                                  text=True, timeout=60, env=env, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"eval oracle could not compute {expression}: {done.stderr.strip()[-200:]}")
            self._cache[key] = json.loads(done.stdout)
        return self._cache[key]

    def line_count(self, project: str, path: str) -> int:
        return len((self.fixtures / project / path).read_text().splitlines())

    def tool(self, project_dir: Path, name: str, arguments: dict) -> dict:
        from sandbox.factory import open_sandbox
        from sandbox.tools import ToolContext, call_tool

        ctx = ToolContext(project=project_dir, sandbox_factory=lambda: open_sandbox(self.sandbox_settings, project_dir))
        try:
            return call_tool(name, arguments, ctx).to_dict()
        finally:
            if ctx.sandbox is not None:
                ctx.sandbox.close()

    def cached_tool(self, project: str, name: str, arguments: dict) -> dict:
        key = f"tool|{project}|{name}|{json.dumps(arguments, sort_keys=True)}"
        if key not in self._cache:
            self._cache[key] = self.tool(self.fixtures / project, name, arguments)
        return self._cache[key]


# ---- oracle building blocks -----------------------------------------------------------------


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def mentions(*needles: str) -> Callable[[Outcome, OracleContext], bool]:
    """The answer contains every needle (case-insensitive)."""
    return lambda out, ctx: all(_norm(n) in _norm(out.answer) for n in needles)


def mentions_none_of(*needles: str):
    return lambda out, ctx: not any(_norm(n) in _norm(out.answer) for n in needles)


def all_of(*checks):
    return lambda out, ctx: all(check(out, ctx) for check in checks)


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def states_number(expected: Callable[[OracleContext], float] | float):
    """A number in the answer equals the expected one (computed from the fixture when callable)."""

    def check(out: Outcome, ctx: OracleContext) -> bool:
        value = expected(ctx) if callable(expected) else expected
        return any(abs(float(n) - float(value)) < 1e-9 for n in _NUMBER.findall(out.answer))

    return check


_CALLED = re.compile(r"\b([A-Za-z_]\w*)\(")


def states_value(project: str, module: str, expression: str):
    """The answer states the value the fixture's own code returns (numbers compared as numbers), and
    every call it writes out is of the function asked about (not 'total_words(...) returns 3')."""
    asked = _CALLED.match(expression).group(1)

    def check(out: Outcome, ctx: OracleContext) -> bool:
        if any(name != asked for name in _CALLED.findall(out.answer)):
            return False
        value = ctx.call_value(project, module, expression)
        if isinstance(value, bool):
            return re.search(rf"\b{value}\b", out.answer, re.IGNORECASE) is not None
        if isinstance(value, (int, float)):
            return states_number(value)(out, ctx)
        return " ".join(str(value).split()) in " ".join(out.answer.split())  # strings: case matters

    return check


_LINE = re.compile(r"\blines?\s+(\d+)", re.IGNORECASE)


def states_definition(project: str, path: str, name: str):
    """The answer names ``name`` and the file defining it; a line it states must be the ``def``'s line."""

    def check(out: Outcome, ctx: OracleContext) -> bool:
        lines = (ctx.fixtures / project / path).read_text().splitlines()
        line = next(i for i, text in enumerate(lines, 1) if re.match(rf"\s*(async\s+)?(def|class)\s+{name}\b", text))
        stated = {int(n) for n in _LINE.findall(out.answer)}
        return name in out.answer and path in out.answer and stated <= {line}

    return check


def tests_pass_after(out: Outcome, ctx: OracleContext) -> bool:
    """The project's tests all pass in the sandbox after the turn (and the tests were not deleted)."""
    result = ctx.tool(out.project, "run_tests", {})
    counts = result.get("counts") or {}
    return bool(counts.get("total")) and not counts.get("failed") and not counts.get("errors")


def file_contains(path: str, text: str):
    def check(out: Outcome, ctx: OracleContext) -> bool:
        target = out.project / path
        return target.is_file() and text in target.read_text(errors="replace")

    return check


def first_analysis_line(project: str, path: str):
    """The answer names the line of analyze_code's first finding (or says clean when none)."""

    def check(out: Outcome, ctx: OracleContext) -> bool:
        result = ctx.cached_tool(project, "analyze_code", {"path": path})
        findings = result.get("findings") or []
        if not findings:
            return "clean" in out.answer.lower() or "no " in out.answer.lower()
        return re.search(rf"\b{findings[0]['line']}\b", out.answer) is not None

    return check


def sandbox_python_version(out: Outcome, ctx: OracleContext) -> bool:
    result = ctx.cached_tool("textstats", "execute_bash", {"command": "python3 --version"})
    version = (result.get("stdout") or "").split()[-1] if result.get("stdout") else None
    return bool(version) and version in out.answer


def count_files(project: str, suffix: str):
    return lambda ctx: sum(1 for p in (ctx.fixtures / project).rglob(f"*{suffix}") if p.name != "conftest.py")


def first_line(project: str, path: str):
    def check(out: Outcome, ctx: OracleContext) -> bool:
        line = (ctx.fixtures / project / path).read_text().splitlines()[0].strip()
        return _norm(line) in _norm(out.answer)

    return check


# ---- the tasks --------------------------------------------------------------------------------


def _tasks() -> list[Task]:
    shop, text, cal = "shop", "textstats", "calendar_tools"
    t = Task
    return [
        t("shop-failing-tests", shop, "Run the tests and tell me which fail.", mentions("test_apply_discount"), "answer"),
        t("shop-count-passing", shop, "How many tests pass in this project?", states_number(2), "answer"),
        t("shop-cart-total", shop, "What does cart_total([2.5, 4, 10]) return?", states_value(shop, "shop.cart", "cart_total([2.5, 4, 10])"), "answer"),
        t("shop-item-count", shop, "What does item_count(['a', 'b', 'a']) return?", states_value(shop, "shop.cart", "item_count(['a', 'b', 'a'])"), "answer"),
        t("shop-discount-value", shop, "What does apply_discount(200, 10) return?", states_value(shop, "shop.cart", "apply_discount(200, 10)"), "answer"),
        t("shop-where-discount", shop, "Where is apply_discount defined?", states_definition(shop, "shop/cart.py", "apply_discount"), "answer"),
        t("shop-fix", shop, "Fix the failing test.", tests_pass_after, "project"),
        t("shop-line-count", shop, "How many lines are in shop/cart.py?", states_number(lambda c: c.line_count(shop, "shop/cart.py")), "answer"),
        t("shop-list-tests", shop, "List the files in the tests folder.", mentions("tests/test_cart.py"), "answer"),
        t("shop-write-notes", shop, "Create a file NOTES.txt containing 'discount bug'.", file_contains("NOTES.txt", "discount bug"), "project"),
        t("shop-compute", shop, "Compute 37 * 41 in Python.", states_number(1517), "answer"),
        t("text-run-tests", text, "Run the tests.", all_of(states_number(3), mentions_none_of("fail:")), "answer"),
        t("text-longest", text, "What does longest_word('a quick brown fox') return?", states_value(text, "textstats.words", "longest_word('a quick brown fox')"), "answer"),
        t("text-capitalize", text, "What does capitalize_words('hello big world') return?", states_value(text, "textstats.words", "capitalize_words('hello big world')"), "answer"),
        t("text-unique", text, "What does unique_words('the cat the dog') return?", states_value(text, "textstats.words", "unique_words('the cat the dog')"), "answer"),
        t("text-where-longest", text, "Where is longest_word defined?", states_definition(text, "textstats/words.py", "longest_word"), "answer"),
        t("text-show-file", text, "Show me textstats/words.py.", mentions("longest_word", "unique_words"), "answer"),
        t("text-analyze", text, "Analyze textstats/words.py for problems.", first_analysis_line(text, "textstats/words.py"), "answer"),
        t("text-count-py", text, "How many Python files does this project have?", states_number(count_files(text, ".py")), "answer"),
        t("text-python-version", text, "Which Python version is in the sandbox?", sandbox_python_version, "answer"),
        t("text-debug", text, "Debug this code:\nvalues = [1, 2]\nprint(values[5])", mentions("IndexError"), "answer"),
        t("cal-failing-tests", cal, "Run the tests and tell me which fail.", mentions("test_not_leap_1900"), "answer"),
        t("cal-roman", cal, "What does to_roman(14) return?", states_value(cal, "dates.roman", "to_roman(14)"), "answer"),
        t("cal-days-feb", cal, "What does days_in_month(2023, 2) return?", states_value(cal, "dates.leap", "days_in_month(2023, 2)"), "answer"),
        t("cal-leap-1900", cal, "What does is_leap_year(1900) return?", states_value(cal, "dates.leap", "is_leap_year(1900)"), "answer"),
        t("cal-fix", cal, "Fix the failing test.", tests_pass_after, "project"),
        t("cal-where-roman", cal, "Where is to_roman defined?", states_definition(cal, "dates/roman.py", "to_roman"), "answer"),
        t("cal-error", cal, "What error does this raise?\nprint(int('abc'))", mentions("ValueError"), "answer"),
        t("cal-docs", cal, "Look up the docs for json.dumps.", mentions("json.dumps", "obj"), "answer"),
        t("cal-list-files", cal, "What files are in this project?", mentions("dates/leap.py", "dates/roman.py"), "answer"),
        t("cal-line-count", cal, "Count the lines of dates/roman.py.", states_number(lambda c: c.line_count(cal, "dates/roman.py")), "answer"),
        t("cal-head", cal, "Show me the first 3 lines of dates/leap.py.", first_line(cal, "dates/leap.py"), "answer"),
    ]


TASKS: list[Task] = _tasks()


def copy_fixture(project: str, parent: Path) -> Path:
    """A private working copy of a fixture project (the task may change it)."""
    target = parent / project
    shutil.copytree(FIXTURES / project, target, ignore=shutil.ignore_patterns("__pycache__", "conftest.py", ".assistant"))
    for path in [target, *target.rglob("*")]:
        path.chmod(0o777 if path.is_dir() else 0o666)
    return target


def run_task(task: Task, loaded, sandbox_settings: Any, ctx: OracleContext, agent_overrides: dict | None = None) -> dict:
    """Run one task through a fresh ``AgentSession`` on a fresh copy; the oracle's verdict and a trace."""
    from assistant.agent import AgentSession, AgentSettings, events
    from sandbox.factory import open_sandbox

    settings = AgentSettings(**{"max_steps": 4, "max_new_tokens": 160, "temperature": 0.0, "max_seconds": 300.0,
                                **(agent_overrides or {})})
    started = time.time()
    with tempfile.TemporaryDirectory(prefix=f"eval-{task.id}-") as tmp:
        project = copy_fixture(task.project, Path(tmp))
        calls: list[str] = []

        def on_event(event) -> None:
            if isinstance(event, events.ToolCallStarted):
                calls.append(event.name)

        session = AgentSession(project, model=loaded, sandbox_factory=lambda: open_sandbox(sandbox_settings, project),
                               index=None, settings=settings,
                               approver=lambda request: events.ApprovalDecision("once"))
        try:
            finished = session.run_turn(task.prompt, on_event=on_event, cancel=threading.Event())
        finally:
            session.close()
        outcome = Outcome(finished.text, project, calls, finished.stop_reason)
        try:
            ok = bool(task.oracle(outcome, ctx))
        except Exception as exc:  # noqa: BLE001 - an oracle failing to check is a failed task, with the reason
            ok, finished_text = False, f"{finished.text} [oracle error: {exc}]"
            outcome.answer = finished_text
    return {"id": task.id, "ok": ok, "answer": outcome.answer[:500], "tool_calls": calls,
            "stop_reason": outcome.stop_reason, "seconds": round(time.time() - started, 2)}


def run_tasks(loaded, sandbox_settings: Any, limit: int | None = None, log: Callable[[str], None] = lambda s: None,
              tasks: list[Task] | None = None, agent_overrides: dict | None = None) -> dict:
    ctx = OracleContext(sandbox_settings)
    chosen = (tasks or TASKS)[: limit or None]
    results = []
    for task in chosen:
        result = run_task(task, loaded, sandbox_settings, ctx, agent_overrides)
        results.append(result)
        log(f"  e2e {task.id}: {'ok' if result['ok'] else 'FAIL'} ({', '.join(result['tool_calls']) or 'no tools'}) {result['answer'][:80]!r}")
    passed = sum(r["ok"] for r in results)
    return {"version": EVAL_SET_VERSION, "tasks": len(results), "passed": passed,
            "success_rate": passed / len(results) if results else 0.0, "results": results}
