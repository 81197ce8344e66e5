"""``AgentSettings``: the ``[agent]`` table, and the approval policies of the ``[approvals]`` table.

Policies: ``allow`` runs a tool without asking, ``ask`` asks the approver each call, ``deny``
hides the tool from the model (its schema is never shown, a call to it is an unknown tool).
Defaults follow the tool's kind: read-only tools allow, execution and writes ask. "Allow always"
writes ``approvals.<tool> = "allow"`` into ``<project>/.assistant/settings.toml``, where the user
can read and edit it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from assistant.agent.errors import AgentError

POLICIES = ("allow", "ask", "deny")
DEFAULT_BY_KIND = {"read": "allow", "execute": "ask", "write": "ask"}


@dataclass
class AgentSettings:
    """Limits and budgets of one agent session. Token budgets are counted with the model's tokenizer."""

    max_steps: int = 12  # model calls per turn (per plan step in plan mode)
    max_seconds: float = 600.0  # wall clock per turn
    max_new_tokens: int = 512  # per model call
    temperature: float = 0.2  # 0: greedy
    top_k: int = 50
    top_p: float = 0.95
    seed: int | None = None
    copy_bias: float = 3.0  # tool-call arguments lean to text of the request and tool results (0: off)
    answer_copy_bias: float = 3.0  # answers after tool results lean to quoting those results (0: off)
    context_tokens: int = 0  # prompt budget; 0: the model's window minus max_new_tokens
    instructions_tokens: int = 600  # AGENTS.md
    memory_tokens: int = 300  # the episodic memory file
    summary_tokens: int = 400  # the compact repo summary and its code map
    retrieval_tokens: int = 600  # code retrieved from the index for the user's message
    retrieval_hits: int = 4
    tool_result_tokens: int = 700  # each tool result the model reads back
    history_summary_tokens: int = 300  # the summary that replaces compacted older turns
    system_prompt: str = ""  # empty: the built-in one
    policies: dict[str, str] = field(default_factory=dict)  # tool -> allow | ask | deny (the [approvals] table)

    def __post_init__(self) -> None:
        for name in ("max_steps", "max_new_tokens", "tool_result_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise AgentError(f"settings: agent.{name} = {value!r} must be a positive integer")
        if not isinstance(self.max_seconds, (int, float)) or self.max_seconds <= 0:
            raise AgentError(f"settings: agent.max_seconds = {self.max_seconds!r} must be positive")
        for tool, policy in self.policies.items():
            if policy not in POLICIES:
                raise AgentError(f"settings: approvals.{tool} = {policy!r} is not a policy", "use allow, ask or deny")


def agent_settings(settings: dict[str, Any], **overrides: Any) -> AgentSettings:
    """Build ``AgentSettings`` from the merged settings file (``[agent]`` and ``[approvals]``)."""
    from assistant.settings import section

    table = dict(settings.get("agent", {}) or {})
    table.pop("policies", None)
    approvals = settings.get("approvals", {}) or {}
    if not isinstance(approvals, dict):
        raise AgentError("settings: [approvals] must be a table of tool = \"allow\" | \"ask\" | \"deny\"")
    base = section({"agent": table}, "agent", AgentSettings)
    values = {**base.__dict__, "policies": {str(k): v for k, v in approvals.items()}}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return AgentSettings(**values)


def default_policy(kind: str) -> str:
    return DEFAULT_BY_KIND.get(kind, "ask")
