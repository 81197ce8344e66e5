"""list_files: the project's files (respecting .gitignore), optionally filtered by a glob."""

from __future__ import annotations

import fnmatch
from typing import Any

from sandbox.tools.base import Tool, ToolContext, ToolKind, ToolResult, failure
from sandbox.tools.paths import PathProblem, relative, resolve_in_project, walk_files

PARAMETERS = {
    "type": "object",
    "properties": {
        "path": {"type": "string", "description": "Directory relative to the project root (default: the root)."},
        "pattern": {"type": "string", "description": "Glob on the relative path, e.g. '*.py' or 'tests/*'."},
        "max_results": {"type": "integer", "minimum": 1, "maximum": 5000, "description": "Default 500."},
        "include_ignored": {"type": "boolean", "description": "Also list files .gitignore excludes."},
    },
    "additionalProperties": False,
}


def run(args: dict[str, Any], ctx: ToolContext) -> ToolResult:
    try:
        start = resolve_in_project(ctx.project, args.get("path") or ".")
    except PathProblem as exc:
        return failure("list_files", str(exc))
    pattern = args.get("pattern")
    limit = args.get("max_results", 500)
    files: list[str] = []
    truncated = False
    for path in walk_files(ctx.project, start, include_ignored=args.get("include_ignored", False)):
        rel = relative(ctx.project, path)
        if pattern and not (fnmatch.fnmatch(rel, pattern) or fnmatch.fnmatch(path.name, pattern)):
            continue
        if len(files) >= limit:
            truncated = True
            break
        files.append(rel)
    return ToolResult(
        tool="list_files",
        ok=True,
        data={"path": relative(ctx.project, start), "files": sorted(files), "count": len(files), "truncated": truncated},
    )


TOOL = Tool(
    name="list_files",
    description="List the project's files (skipping what .gitignore excludes), optionally filtered by a glob.",
    parameters=PARAMETERS,
    kind=ToolKind.READ,
    run=run,
)
