"""write_file: create or replace a file of the real project, only after the user approves the diff.

A backup is taken first (``sandbox.tools.backup``), so the change can be undone.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from sandbox.tools.backup import Change, apply_changes, prune
from sandbox.tools.base import Approval, Tool, ToolContext, ToolKind, ToolResult, failure
from sandbox.tools.paths import PathProblem, is_protected, relative, resolve_in_project

MAX_BYTES = 1024 * 1024

PARAMETERS = {
    "type": "object",
    "properties": {
        "path": {"type": "string", "minLength": 1, "description": "File path relative to the project root."},
        "content": {"type": "string", "maxLength": MAX_BYTES, "description": "The complete new content."},
    },
    "required": ["path", "content"],
    "additionalProperties": False,
}


def unified_diff(rel: str, old: bytes | None, new: bytes | None) -> str:
    old_lines = [] if old is None else old.decode("utf-8", "replace").splitlines(keepends=True)
    new_lines = [] if new is None else new.decode("utf-8", "replace").splitlines(keepends=True)
    diff = difflib.unified_diff(
        old_lines,
        new_lines,
        fromfile="/dev/null" if old is None else f"a/{rel}",
        tofile="/dev/null" if new is None else f"b/{rel}",
    )
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in diff)


def approve_and_write(ctx: ToolContext, tool: str, changes: list[Change], summary: str, diff: str) -> ToolResult:
    """Ask the user; on yes, back up and write. Nothing is touched without a yes."""
    paths = [relative(ctx.project, change.path) for change in changes]
    if ctx.approve is None:
        return failure(tool, "not written: changing project files needs the user's approval, and none can be asked here",
                       paths=paths)  # fmt: skip
    try:
        approved = bool(ctx.approve(Approval(tool=tool, summary=summary, diff=diff, paths=paths)))
    except Exception as exc:
        return failure(tool, f"not written: the approval prompt failed ({exc})", paths=paths)
    if not approved:
        return failure(tool, "not written: the user declined the change", paths=paths)
    backup_id = apply_changes(ctx.project, changes, tool, summary)
    prune(ctx.project)
    return ToolResult(tool=tool, ok=True, data={"paths": paths, "backup_id": backup_id, "summary": summary})


def checked_target(ctx: ToolContext, given: str) -> Path:
    path = resolve_in_project(ctx.project, given, must_exist=False)
    why = is_protected(ctx.project, path)
    if why:
        raise PathProblem(why)
    if path.is_dir():
        raise PathProblem(f"{given} is a directory")
    return path


def run(args: dict[str, Any], ctx: ToolContext) -> ToolResult:
    try:
        path = checked_target(ctx, args["path"])
    except PathProblem as exc:
        return failure("write_file", str(exc))
    new = args["content"].encode("utf-8")
    old = path.read_bytes() if path.is_file() else None
    rel = relative(ctx.project, path)
    if old == new:
        return ToolResult(tool="write_file", ok=True, data={"paths": [rel], "unchanged": True})
    diff = unified_diff(rel, old, new)
    changed = sum(1 for line in diff.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---"))
    verb = "create" if old is None else "rewrite"
    return approve_and_write(ctx, "write_file", [Change(path, new)], f"{verb} {rel} ({changed} lines changed)", diff)


TOOL = Tool(
    name="write_file",
    description=(
        "Create or overwrite a file in the user's project with the given content. The user sees the "
        "diff and must approve; a backup allows undo. For small edits prefer apply_patch."
    ),
    parameters=PARAMETERS,
    kind=ToolKind.WRITE,
    run=run,
)
