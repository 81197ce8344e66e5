"""What an agent turn tells its caller (the TUI, the headless command, the eval): plain dataclasses.

``AgentSession.run_turn`` calls ``on_event`` with these from its worker thread, in order:
``TurnStarted``, then any of ``TextDelta`` / ``ToolCallStarted`` / ``ToolCallFinished`` /
``PlanProposed`` / ``PlanStep`` / ``Notice``, and last ``TurnFinished`` (also its return value).
``ApprovalRequest`` is not an event: it is passed to the session's ``approver``, which blocks
until the user answers with an ``ApprovalDecision``. Nothing here imports Textual or torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Choice = Literal["once", "always", "reject"]
ToolStatus = Literal["ok", "error", "rejected", "denied"]
NoticeLevel = Literal["info", "warning", "error"]
# "rejected": the user rejected a tool call without an instruction, so the turn stopped there.
StopReason = Literal["answer", "max_steps", "max_time", "cancelled", "error", "repeated_failure", "rejected"]


@dataclass
class TurnStarted:
    """A turn began (``turn_id`` is what ``AgentSession.rate`` takes)."""

    turn_id: str
    text: str
    plan: bool = False


@dataclass
class TextDelta:
    """Streamed model text (the reply's prose, never the tool-call JSON)."""

    text: str


@dataclass
class ToolCallStarted:
    call_id: str
    name: str
    arguments: dict[str, Any]


@dataclass
class ApprovalRequest:
    """Asked of the approver when a tool's policy is ``ask`` (and for a plan in plan mode: tool "plan").

    ``diff`` is the unified diff for the write tools (shown before anything is written).
    """

    call_id: str
    tool: str
    arguments: dict[str, Any]
    summary: str
    diff: str | None = None


@dataclass
class ApprovalDecision:
    """``once``: run this call; ``always``: run it and persist ``approvals.<tool> = "allow"`` in the
    project's settings file; ``reject``: do not run it (``instruction`` is passed on to the model,
    and without one the turn stops)."""

    choice: Choice = "once"
    instruction: str | None = None


@dataclass
class ToolCallFinished:
    call_id: str
    name: str
    ok: bool
    output: str  # what the model reads back (truncated to the tool-result budget)
    truncated: bool
    duration_s: float
    status: ToolStatus


@dataclass
class PlanProposed:
    steps: list[str]


@dataclass
class PlanStep:
    """Progress against an approved plan; status: "running" | "done" | "failed" | "skipped"."""

    index: int  # 1-based
    total: int
    text: str
    status: str


@dataclass
class Notice:
    """Something the user should see that is not model text: degraded index/sandbox, retries, compaction."""

    text: str
    level: NoticeLevel = "info"


@dataclass
class TurnFinished:
    turn_id: str
    text: str  # the final answer, or the explanation of why the turn stopped
    stop_reason: StopReason
    tokens: int = 0  # generated this turn
    tokens_per_s: float = 0.0  # decode rate of the last model call
    changed_files: list[str] = field(default_factory=list)  # project-relative, undoable
    steps: int = 0  # model calls made this turn


AgentEvent = TurnStarted | TextDelta | ToolCallStarted | ToolCallFinished | PlanProposed | PlanStep | Notice | TurnFinished


def event_to_dict(event: Any) -> dict[str, Any]:
    """``{"event": "<ClassName>", ...fields}``: the headless ``--json`` stream's line format."""
    return {"event": type(event).__name__, **asdict(event)}
