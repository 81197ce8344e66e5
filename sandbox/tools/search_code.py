"""search_code: grep-like search of the project's files (respecting .gitignore).

Patterns use the ``regex`` module with a time limit, so a pathological pattern from the model
cannot hang the session.
"""

from __future__ import annotations

import fnmatch
import time
from typing import Any

from sandbox.tools.base import Tool, ToolContext, ToolKind, ToolResult, failure
from sandbox.tools.paths import PathProblem, is_binary, relative, resolve_in_project, walk_files

MAX_FILE_BYTES = 2 * 1024 * 1024
MAX_LINE_CHARS = 400
BUDGET_S = 10.0

PARAMETERS = {
    "type": "object",
    "properties": {
        "pattern": {"type": "string", "minLength": 1, "description": "Regular expression (or text with fixed_string)."},
        "path": {"type": "string", "description": "File or directory to search (default: the project root)."},
        "glob": {"type": "string", "description": "Only files whose path or name matches, e.g. '*.py'."},
        "fixed_string": {"type": "boolean", "description": "Treat pattern as plain text."},
        "ignore_case": {"type": "boolean"},
        "context_lines": {"type": "integer", "minimum": 0, "maximum": 5, "description": "Lines around each match."},
        "max_results": {"type": "integer", "minimum": 1, "maximum": 1000, "description": "Default 100."},
    },
    "required": ["pattern"],
    "additionalProperties": False,
}


def run(args: dict[str, Any], ctx: ToolContext) -> ToolResult:
    import regex

    flags = regex.IGNORECASE if args.get("ignore_case") else 0
    source = regex.escape(args["pattern"]) if args.get("fixed_string") else args["pattern"]
    try:
        pattern = regex.compile(source, flags)
    except regex.error as exc:
        return failure("search_code", f"invalid regular expression: {exc}", hint="set fixed_string to search plain text")
    try:
        start = resolve_in_project(ctx.project, args.get("path") or ".")
    except PathProblem as exc:
        return failure("search_code", str(exc))
    glob = args.get("glob")
    context = args.get("context_lines", 0)
    limit = args.get("max_results", 100)
    deadline = time.monotonic() + BUDGET_S
    matches: list[dict[str, Any]] = []
    files_searched = 0
    truncated = False
    stopped = None
    for path in walk_files(ctx.project, start):
        rel = relative(ctx.project, path)
        if glob and not (fnmatch.fnmatch(rel, glob) or fnmatch.fnmatch(path.name, glob)):
            continue
        try:
            if path.stat().st_size > MAX_FILE_BYTES or is_binary(path):
                continue
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        files_searched += 1
        for index, line in enumerate(lines):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                stopped = f"stopped after {BUDGET_S:g} s"
                break
            try:
                found = pattern.search(line, timeout=remaining)
            except TimeoutError:
                stopped = f"the pattern is too slow (stopped after {BUDGET_S:g} s)"
                break
            if not found:
                continue
            if len(matches) >= limit:
                truncated = True
                break
            match: dict[str, Any] = {"path": rel, "line": index + 1, "text": line[:MAX_LINE_CHARS]}
            if context:
                match["before"] = [text[:MAX_LINE_CHARS] for text in lines[max(0, index - context) : index]]
                match["after"] = [text[:MAX_LINE_CHARS] for text in lines[index + 1 : index + 1 + context]]
            matches.append(match)
        if truncated or stopped:
            break
    data = {"matches": matches, "count": len(matches), "files_searched": files_searched, "truncated": truncated}
    if stopped:
        data["stopped"] = stopped
    return ToolResult(tool="search_code", ok=True, data=data)


TOOL = Tool(
    name="search_code",
    description="Search the project's files for a regular expression, like grep; skips .gitignore'd files.",
    parameters=PARAMETERS,
    kind=ToolKind.READ,
    run=run,
)
