"""read_file: read a text file of the project (never outside it), with line numbers."""

from __future__ import annotations

from typing import Any

from sandbox.tools.base import Tool, ToolContext, ToolKind, ToolResult, failure
from sandbox.tools.paths import PathProblem, is_binary, relative, resolve_in_project

MAX_LINES = 2000
MAX_BYTES = 256 * 1024

PARAMETERS = {
    "type": "object",
    "properties": {
        "path": {"type": "string", "minLength": 1, "description": "File path relative to the project root."},
        "start_line": {"type": "integer", "minimum": 1, "description": "First line to return (1-based)."},
        "max_lines": {"type": "integer", "minimum": 1, "maximum": MAX_LINES, "description": "How many lines."},
    },
    "required": ["path"],
    "additionalProperties": False,
}


def run(args: dict[str, Any], ctx: ToolContext) -> ToolResult:
    try:
        path = resolve_in_project(ctx.project, args["path"])
    except PathProblem as exc:
        return failure("read_file", str(exc))
    rel = relative(ctx.project, path)
    if path.is_dir():
        return failure("read_file", f"{rel} is a directory", hint="use list_files")
    if is_binary(path):
        return failure("read_file", f"{rel} is a binary file", size=path.stat().st_size)
    start = args.get("start_line", 1)
    count = args.get("max_lines", 400)
    lines: list[str] = []
    total = 0
    size = 0
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            total = number
            if number >= start and len(lines) < count and size < MAX_BYTES:
                lines.append(line.rstrip("\n"))
                size += len(line)
    end = start + len(lines) - 1
    numbered = "\n".join(f"{n:>6}\t{text}" for n, text in enumerate(lines, start))
    return ToolResult(
        tool="read_file",
        ok=True,
        data={
            "path": rel,
            "start_line": start,
            "end_line": max(end, start - 1),
            "total_lines": total,
            "truncated": end < total,
            "content": numbered,
        },
    )


TOOL = Tool(
    name="read_file",
    description="Read a text file of the project with line numbers (up to 2000 lines per call).",
    parameters=PARAMETERS,
    kind=ToolKind.READ,
    run=run,
)
