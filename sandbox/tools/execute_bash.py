"""execute_bash: run a bash command line in the sandbox and return its output."""

from __future__ import annotations

from typing import Any

from sandbox.tools.base import Tool, ToolContext, ToolKind, ToolResult, timeout_param
from sandbox.tools.execute_python import exec_result

PARAMETERS = {
    "type": "object",
    "properties": {
        "command": {"type": "string", "minLength": 1, "maxLength": 100_000, "description": "A bash command line."},
        "timeout": timeout_param(),
    },
    "required": ["command"],
    "additionalProperties": False,
}


def run(args: dict[str, Any], ctx: ToolContext) -> ToolResult:
    result = ctx.get_sandbox().run(args["command"], "bash", timeout=args.get("timeout"))
    return exec_result("execute_bash", result)


TOOL = Tool(
    name="execute_bash",
    description=(
        "Run a bash command in the sandbox. The project is read-only at /workspace (the working "
        "directory); /scratch and /tmp are writable. No network. Returns stdout, stderr, exit_code."
    ),
    parameters=PARAMETERS,
    kind=ToolKind.EXECUTE,
    run=run,
)
