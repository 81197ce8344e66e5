"""run_tests: pytest in the sandbox against the read-only workspace, summarised from its JUnit XML.

Counts and the failing tests' short tracebacks come from pytest's own report (``--junitxml``),
not from scraping its console output.
"""

from __future__ import annotations

import shlex
import uuid
import xml.etree.ElementTree as ET
from typing import Any

from sandbox.tools.base import Tool, ToolContext, ToolKind, ToolResult, failure, timeout_param

MAX_FAILURES = 20
MAX_TRACE_LINES = 30
EXIT_MEANING = {2: "interrupted", 3: "internal error", 4: "usage error"}

PARAMETERS = {
    "type": "object",
    "properties": {
        "path": {"type": "string", "description": "Test file or directory relative to the project (default: all)."},
        "keyword": {"type": "string", "description": "Only tests matching this pytest -k expression."},
        "timeout": timeout_param("Seconds before the test run is killed."),
    },
    "additionalProperties": False,
}


def _short(text: str) -> str:
    lines = [line for line in (text or "").strip().splitlines()]
    if len(lines) > MAX_TRACE_LINES:
        lines = ["..."] + lines[-MAX_TRACE_LINES:]
    return "\n".join(lines)


def parse_junit(xml_bytes: bytes) -> dict[str, Any]:
    """Counts and failures from pytest's JUnit XML (xunit1 family: file and line per test)."""
    root = ET.fromstring(xml_bytes)
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    failures: list[dict[str, Any]] = []
    duration = 0.0
    for suite in suites:
        duration += float(suite.get("time", 0) or 0)
        for case in suite.iter("testcase"):
            test_id = "::".join(p for p in (case.get("file") or case.get("classname", ""), case.get("name", "")) if p)
            outcome = "passed"
            problem = None
            for tag in ("failure", "error", "skipped"):
                problem = case.find(tag)
                if problem is not None:
                    outcome = {"failure": "failed", "error": "errors", "skipped": "skipped"}[tag]
                    break
            counts[outcome] += 1
            if outcome in ("failed", "errors") and len(failures) < MAX_FAILURES and problem is not None:
                failures.append(
                    {
                        "test": test_id,
                        "outcome": "failed" if outcome == "failed" else "error",
                        "file": case.get("file"),
                        "line": int(case.get("line")) + 1 if (case.get("line") or "").isdigit() else None,
                        "message": (problem.get("message") or "").strip()[:500],
                        "traceback": _short(problem.text or ""),
                    }
                )
    counts["total"] = sum(counts.values())
    return {"counts": counts, "failures": failures, "duration_s": round(duration, 3)}


def run(args: dict[str, Any], ctx: ToolContext) -> ToolResult:
    sandbox = ctx.get_sandbox()
    run_id = uuid.uuid4().hex[:8]
    report = f"{sandbox.scratch}/.assistant/junit-{run_id}.xml"
    command = [
        "python3", "-m", "pytest", "-q", "--tb=short", "-p", "no:cacheprovider",
        "-o", "junit_family=xunit1", f"--junitxml={report}", f"--basetemp={sandbox.scratch}/.assistant/pytest-{run_id}",
    ]  # fmt: skip
    if args.get("keyword"):
        command += ["-k", args["keyword"]]
    if args.get("path"):
        command += ["--", args["path"]]
    line = f"mkdir -p {shlex.quote(sandbox.scratch)}/.assistant && " + shlex.join(command)
    result = sandbox.run(line, "bash", timeout=args.get("timeout"))
    # pytest's line about our own report file is noise to the reader (and a path it might chase)
    tail = "".join(line for line in result.stdout.splitlines(keepends=True) if report not in line)[-2000:]
    if result.refused:
        return failure("run_tests", result.stderr)
    if result.timed_out:
        return failure("run_tests", f"the test run was killed at the {result.duration_s:.0f} s timeout", output_tail=tail)
    if "No module named pytest" in result.stderr:
        return failure("run_tests", "pytest is not installed in the sandbox image",
                       hint="add it with `assistant sandbox build --requirements FILE`")  # fmt: skip
    xml_bytes = sandbox.read_file(report, 8 << 20)
    if not xml_bytes:
        meaning = EXIT_MEANING.get(result.exit_code or 0, f"exit status {result.exit_code}")
        return failure("run_tests", f"pytest produced no report ({meaning})",
                       output_tail=tail, stderr_tail=result.stderr[-2000:])  # fmt: skip
    try:
        summary = parse_junit(xml_bytes)
    except ET.ParseError as exc:
        return failure("run_tests", f"pytest's report could not be read: {exc}", output_tail=tail)
    counts = summary["counts"]
    data = {**summary, "exit_code": result.exit_code, "output_tail": tail}
    if result.exit_code == 5 or counts["total"] == 0:
        data["note"] = "no tests were collected"
    ok = result.exit_code in (0, 5) and counts["failed"] == 0 and counts["errors"] == 0
    error = None if ok else f"{counts['failed']} failed, {counts['errors']} errors of {counts['total']} tests"
    return ToolResult(tool="run_tests", ok=ok, data=data, error=error)


TOOL = Tool(
    name="run_tests",
    description=(
        "Run the project's tests with pytest in the sandbox. Returns passed/failed/error/skipped counts "
        "and, for each failing test, its location, message and short traceback."
    ),
    parameters=PARAMETERS,
    kind=ToolKind.EXECUTE,
    run=run,
)
