"""execute_python: run a Python program in the sandbox and return its output."""

from __future__ import annotations

from typing import Any

from sandbox.tools.base import Tool, ToolContext, ToolKind, ToolResult, timeout_param

PARAMETERS = {
    "type": "object",
    "properties": {
        "code": {"type": "string", "minLength": 1, "maxLength": 100_000, "description": "The Python program to run."},
        "timeout": timeout_param(),
    },
    "required": ["code"],
    "additionalProperties": False,
}


def exec_result(tool: str, result: Any) -> ToolResult:
    """The common shape of a run: ok only when it exited 0 within its limits."""
    data = result.to_dict()
    data.pop("backend", None)
    if result.refused:
        return ToolResult(tool=tool, ok=False, data=data, error=result.stderr)
    error = None
    if result.timed_out:
        error = f"killed at the {result.duration_s:.1f} s timeout"
    elif result.oom_killed:
        error = "killed: out of memory (the sandbox's memory limit)"
    elif result.exit_code != 0:
        error = f"exited with status {result.exit_code}"
    return ToolResult(tool=tool, ok=error is None, data=data, error=error)


def run(args: dict[str, Any], ctx: ToolContext) -> ToolResult:
    result = ctx.get_sandbox().run(args["code"], "python", timeout=args.get("timeout"))
    return exec_result("execute_python", result)


TOOL = Tool(
    name="execute_python",
    description=(
        "Run a Python 3 program in the sandbox. The project is read-only at /workspace (the working "
        "directory); write files under /scratch or /tmp. No network. Returns stdout, stderr, exit_code."
    ),
    parameters=PARAMETERS,
    kind=ToolKind.EXECUTE,
    run=run,
)
