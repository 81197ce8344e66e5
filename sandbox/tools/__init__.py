"""The tools the model calls: the single source of truth for their names and JSON schemas.

    from sandbox.tools import TOOLS, get_tool, tool_schemas, call_tool

``tool_schemas()`` is what the chat format and the training-data generator embed; ``call_tool``
is what the agent loop calls. Each tool lives in its own module with its schema beside it.
"""

from __future__ import annotations

import json
from typing import Any

from sandbox.tools import (
    analyze_code,
    apply_patch,
    debug_code,
    execute_bash,
    execute_python,
    list_files,
    read_file,
    run_tests,
    search_code,
    search_docs,
    write_file,
)
from sandbox.tools.base import Approval, Tool, ToolContext, ToolKind, ToolResult, failure

_MODULES = (
    execute_python,
    execute_bash,
    run_tests,
    analyze_code,
    debug_code,
    search_docs,
    read_file,
    list_files,
    search_code,
    write_file,
    apply_patch,
)
TOOLS: dict[str, Tool] = {module.TOOL.name: module.TOOL for module in _MODULES}


def get_tool(name: str) -> Tool | None:
    return TOOLS.get(name)


def tool_schemas(kinds: tuple[ToolKind, ...] | None = None) -> list[dict[str, Any]]:
    """Every tool's schema (optionally only some kinds), in a stable order."""
    return [tool.schema() for tool in TOOLS.values() if kinds is None or tool.kind in kinds]


def validation_error(tool: Tool, arguments: Any) -> str | None:
    """One line saying what is wrong with ``arguments``, or None when they fit the schema."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(tool.parameters)
    errors = sorted(validator.iter_errors(arguments), key=lambda e: list(e.absolute_path))
    if not errors:
        return None
    err = errors[0]
    where = ".".join(str(p) for p in err.absolute_path)
    return f"invalid arguments for {tool.name}: {where + ': ' if where else ''}{err.message}"


def call_tool(name: str, arguments: Any, ctx: ToolContext) -> ToolResult:
    """Validate and run one tool call; never raises."""
    from sandbox import SandboxError

    tool = TOOLS.get(name) if isinstance(name, str) else None
    if tool is None:
        return failure(str(name), f"unknown tool '{name}'", known_tools=sorted(TOOLS))
    if isinstance(arguments, (str, bytes)):
        try:
            arguments = json.loads(arguments or "{}")
        except ValueError as exc:
            return failure(name, f"arguments are not valid JSON: {exc}")
    if arguments is None:
        arguments = {}
    problem = validation_error(tool, arguments)
    if problem:
        return failure(name, problem, parameters=tool.parameters)
    try:
        return tool.run(arguments, ctx)
    except SandboxError as exc:
        return failure(name, str(exc))
    except Exception as exc:  # a bug in a tool must not crash the session
        return failure(name, f"internal error in {name}: {type(exc).__name__}: {exc}")


__all__ = ["TOOLS", "Approval", "Tool", "ToolContext", "ToolKind", "ToolResult", "call_tool", "get_tool", "tool_schemas"]
