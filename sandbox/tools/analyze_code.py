"""analyze_code: static analysis of a snippet or of project files, with line numbers.

syntax: ``ast``; lint: ruff (the project's own ruff config applies to project files);
security: bandit; complexity: radon's cyclomatic complexity. Static only: nothing is executed,
so it runs on the host, outside the sandbox.
"""

from __future__ import annotations

import ast
import json
import logging
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from sandbox.tools.base import Tool, ToolContext, ToolKind, ToolResult, failure
from sandbox.tools.paths import PathProblem, relative, resolve_in_project, walk_files

CHECKS = ("syntax", "lint", "security", "complexity")
MAX_FILES = 200
MAX_FINDINGS = 200
COMPLEXITY_LIMIT = 10  # radon rank C and worse
SNIPPET_RULES = "E4,E7,E9,F,W,B"

PARAMETERS = {
    "type": "object",
    "properties": {
        "code": {"type": "string", "minLength": 1, "maxLength": 500_000, "description": "Python source to analyse."},
        "path": {"type": "string", "minLength": 1, "description": "A .py file or a directory of the project."},
        "checks": {
            "type": "array",
            "items": {"enum": list(CHECKS)},
            "uniqueItems": True,
            "description": "Which checks (default: all of syntax, lint, security, complexity).",
        },
    },
    "minProperties": 1,
    "additionalProperties": False,
}


def ruff_bin() -> str:
    try:
        from ruff.__main__ import find_ruff_bin

        return find_ruff_bin()
    except Exception:
        return str(Path(sys.executable).with_name("ruff"))


def check_syntax(source: str, name: str) -> list[dict[str, Any]]:
    try:
        ast.parse(source, filename=name)
    except SyntaxError as exc:
        return [{"file": name, "line": exc.lineno, "column": exc.offset, "tool": "syntax", "code": "SyntaxError",
                 "severity": "error", "message": exc.msg}]  # fmt: skip
    return []


def check_lint(files: list[Path], names: dict[Path, str], cwd: Path, isolated: bool) -> list[dict[str, Any]]:
    argv = [ruff_bin(), "check", "--output-format=json", "--no-cache", "--exit-zero", "--force-exclude"]
    if isolated:
        argv += ["--isolated", "--select", SNIPPET_RULES]
    done = subprocess.run(argv + [str(f) for f in files], capture_output=True, text=True, cwd=cwd, timeout=120)
    try:
        items = json.loads(done.stdout or "[]")
    except ValueError:
        raise RuntimeError(f"ruff failed: {(done.stderr or done.stdout).strip()[:200]}") from None
    findings = []
    for item in items:
        if item.get("code") is None and "SyntaxError" in (item.get("message") or ""):
            continue  # reported by the syntax check
        path = Path(item["filename"]).resolve()
        location = item.get("location") or {}
        findings.append({"file": names.get(path, path.name), "line": location.get("row"), "column": location.get("column"),
                         "tool": "ruff", "code": item.get("code"), "severity": "warning",
                         "message": item.get("message")})  # fmt: skip
    return findings


def check_security(files: list[Path], names: dict[Path, str]) -> list[dict[str, Any]]:
    from bandit.core import config as bandit_config
    from bandit.core import manager as bandit_manager

    logging.getLogger("bandit").setLevel(logging.ERROR)
    manager = bandit_manager.BanditManager(bandit_config.BanditConfig(), "file", quiet=True)
    manager.discover_files([str(f) for f in files], recursive=False)
    manager.run_tests()
    findings = []
    for issue in manager.get_issue_list():
        path = Path(issue.fname).resolve()
        findings.append({"file": names.get(path, path.name), "line": issue.lineno, "column": getattr(issue, "col_offset", None),
                         "tool": "bandit", "code": issue.test_id, "severity": str(issue.severity).lower(),
                         "confidence": str(issue.confidence).lower(), "message": issue.text})  # fmt: skip
    return findings


def check_complexity(source: str, name: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    from radon.complexity import cc_rank, cc_visit

    blocks = []
    for block in cc_visit(source):
        qualified = f"{block.classname}.{block.name}" if getattr(block, "classname", None) else block.name
        blocks.append({"file": name, "name": qualified, "line": block.lineno, "complexity": block.complexity,
                       "rank": cc_rank(block.complexity)})  # fmt: skip
    findings = [
        {"file": b["file"], "line": b["line"], "column": None, "tool": "radon", "code": f"CC-{b['rank']}",
         "severity": "warning", "message": f"{b['name']} has cyclomatic complexity {b['complexity']} (rank {b['rank']})"}
        for b in blocks
        if b["complexity"] > COMPLEXITY_LIMIT
    ]  # fmt: skip
    return findings, blocks


def analyse(files: list[Path], names: dict[Path, str], cwd: Path, isolated: bool, checks: tuple[str, ...]) -> dict[str, Any]:
    findings: list[dict[str, Any]] = []
    blocks: list[dict[str, Any]] = []
    parsable: list[Path] = []
    for path in files:
        source = path.read_text(encoding="utf-8", errors="replace")
        problems = check_syntax(source, names[path])
        if "syntax" in checks:
            findings += problems
        if problems:
            continue
        parsable.append(path)
        if "complexity" in checks:
            found, file_blocks = check_complexity(source, names[path])
            findings += found
            blocks += file_blocks
    if "lint" in checks and files:
        findings += check_lint(files, names, cwd, isolated)
    if "security" in checks and parsable:
        findings += check_security(parsable, names)
    findings.sort(key=lambda f: (f["file"], f["line"] or 0, f["tool"]))
    summary = {check: 0 for check in checks}
    tool_check = {"syntax": "syntax", "ruff": "lint", "bandit": "security", "radon": "complexity"}
    for finding in findings:
        summary[tool_check[finding["tool"]]] = summary.get(tool_check[finding["tool"]], 0) + 1
    blocks.sort(key=lambda b: -b["complexity"])
    return {
        "files": len(files),
        "summary": summary,
        "findings": findings[:MAX_FINDINGS],
        "truncated": len(findings) > MAX_FINDINGS,
        "most_complex": blocks[:10],
    }


def run(args: dict[str, Any], ctx: ToolContext) -> ToolResult:
    checks = tuple(args.get("checks") or CHECKS)
    if ("code" in args) == ("path" in args):
        return failure("analyze_code", "give exactly one of 'code' or 'path'")
    if "code" in args:
        with tempfile.TemporaryDirectory(prefix="assistant-analyze-") as tmp:
            snippet = Path(tmp).resolve() / "snippet.py"
            snippet.write_text(args["code"], encoding="utf-8")
            data = analyse([snippet], {snippet: "snippet.py"}, Path(tmp), True, checks)
        return ToolResult(tool="analyze_code", ok=True, data=data)
    try:
        target = resolve_in_project(ctx.project, args["path"])
    except PathProblem as exc:
        return failure("analyze_code", str(exc))
    if target.is_file():
        files = [target]
    else:
        files = [p for p in walk_files(ctx.project, target) if p.suffix == ".py"]
    if not files:
        return failure("analyze_code", f"no Python files under {relative(ctx.project, target)}")
    truncated_files = len(files) > MAX_FILES
    files = [f.resolve() for f in files[:MAX_FILES]]
    names = {f: relative(ctx.project, f) for f in files}
    data = analyse(files, names, ctx.project, False, checks)
    if truncated_files:
        data["note"] = f"only the first {MAX_FILES} files were analysed"
    return ToolResult(tool="analyze_code", ok=True, data=data)


TOOL = Tool(
    name="analyze_code",
    description=(
        "Static analysis of Python code (a snippet or project files): syntax errors, lint (ruff), "
        "security issues (bandit) and cyclomatic complexity (radon), each finding with its line number."
    ),
    parameters=PARAMETERS,
    kind=ToolKind.READ,
    run=run,
)
