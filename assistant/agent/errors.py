"""The agent package's one exception for expected failures."""

from common.errors import AssistantError


class AgentError(AssistantError):
    """An expected agent failure: bad settings, nothing to undo, an unknown session."""
