"""What a tool is: a JSON schema, a kind (read / execute / write) and a function returning a result.

Tools never raise for bad input: ``call_tool`` validates the arguments against the schema and
turns every failure (a wrong type, a missing file, a dead sandbox) into a ``ToolResult`` with
``ok=False`` and a one-line ``error`` the model can act on.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from sandbox.base import Sandbox


class ToolKind(str, Enum):
    """How much a tool can do; the approval policy keys on it."""

    READ = "read"  # reads the project: allowed by default
    EXECUTE = "execute"  # runs code in the sandbox: asks by default
    WRITE = "write"  # changes the user's real project: always asks


@dataclass
class ToolResult:
    tool: str
    ok: bool
    data: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"tool": self.tool, "ok": self.ok}
        if self.error is not None:
            out["error"] = self.error
        out.update(self.data)
        return out

    def to_json(self) -> str:
        """The compact form the model reads back."""
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))


def failure(tool: str, error: str, **data: Any) -> ToolResult:
    return ToolResult(tool=tool, ok=False, data=data, error=error)


@dataclass
class Approval:
    """A request to change the user's project, shown to the user before anything is written."""

    tool: str
    summary: str  # one line: "write src/app.py (12 lines changed)"
    diff: str  # unified diff of every change
    paths: list[str]


ApproveFn = Callable[[Approval], bool]


@dataclass
class ToolContext:
    """What tools may use. ``sandbox_factory`` starts the sandbox on first need (lazily)."""

    project: Path
    sandbox: Sandbox | None = None
    sandbox_factory: Callable[[], Sandbox] | None = None
    approve: ApproveFn | None = None
    cache_dir: Path | None = None  # for the docs index; default $XDG_CACHE_HOME/assistant

    def __post_init__(self) -> None:
        self.project = Path(self.project).resolve()

    def get_sandbox(self) -> Sandbox:
        from sandbox import SandboxError

        if self.sandbox is None:
            if self.sandbox_factory is None:
                raise SandboxError("no sandbox in this session", "open one with sandbox.factory.open_sandbox")
            self.sandbox = self.sandbox_factory()
        return self.sandbox


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    kind: ToolKind
    run: Callable[[dict[str, Any], ToolContext], ToolResult]

    def schema(self) -> dict[str, Any]:
        """OpenAI-style function schema: name, description, parameters (JSON Schema)."""
        return {"name": self.name, "description": self.description, "parameters": self.parameters}


def timeout_param(description: str = "Seconds before the call is killed (capped by the sandbox's limit).") -> dict:
    return {"type": "number", "minimum": 0.1, "maximum": 3600, "description": description}
