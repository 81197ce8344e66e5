"""The agent (stage 7): context assembly, the model ↔ tools loop, approvals, plan mode, undo, memory.

    from assistant.agent import AgentSession, AgentSettings, events

Plain Python, shared by the TUI, ``assistant agent`` and the eval; nothing here imports Textual.
The contract is written in docs/AGENT.md.
"""

from assistant.agent import events
from assistant.agent.errors import AgentError
from assistant.agent.session import AgentSession, approve_all, reject_all
from assistant.agent.settings import AgentSettings, agent_settings
from assistant.agent.store import SessionStore

__all__ = ["AgentError", "AgentSession", "AgentSettings", "SessionStore", "agent_settings", "approve_all", "events",
           "reject_all"]
