"""Every custom message of the app, in one module.

Worker threads and the agent session never touch widgets: they post these messages, and the
``@on`` handlers on the app and its screen (which run on the event loop) own the state.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

from textual.message import Message


class AgentEventPosted(Message):
    """An event from ``AgentSession.run_turn`` (``assistant.agent.events``), posted from its worker."""

    def __init__(self, event: Any) -> None:
        super().__init__()
        self.event = event


class TextArrived(Message):
    """Streamed model text is waiting in the app's buffer (``segment``: which run of text it belongs to)."""

    def __init__(self, segment: int) -> None:
        super().__init__()
        self.segment = segment


class ApprovalNeeded(Message):
    """The agent waits (blocked in its worker) for the user's decision on ``request``.

    The handler resolves ``reply`` with an ``ApprovalDecision``; the worker is waiting on it.
    """

    def __init__(self, request: Any, reply: Future) -> None:
        super().__init__()
        self.request = request
        self.reply = reply


class TurnEnded(Message):
    """``run_turn`` returned (``finished``) or raised (``error``, one line)."""

    def __init__(self, finished: Any | None, error: str | None = None) -> None:
        super().__init__()
        self.finished = finished
        self.error = error


class SessionReady(Message):
    """The slow start-up (model, index, sandbox probe, session) finished; ``state`` says what holds."""

    def __init__(self, state: Any) -> None:
        super().__init__()
        self.state = state


class StatusChanged(Message):
    """Some field of the status bar changed (``fields``: name -> value)."""

    def __init__(self, **fields: Any) -> None:
        super().__init__()
        self.fields = fields


class Note(Message):
    """A line for the transcript that is not model text (a slow command's result, an error)."""

    def __init__(self, text: str, level: str = "info", markdown: bool = False) -> None:
        super().__init__()
        self.text = text
        self.level = level
        self.markdown = markdown


class RateRequested(Message):
    """The user rated an assistant reply (+1 / -1), from its buttons or its ``+``/``-`` keys."""

    def __init__(self, turn_id: str, value: int) -> None:
        super().__init__()
        self.turn_id = turn_id
        self.value = value


class PromptSubmitted(Message):
    """The user pressed Enter in the prompt: a message or a slash command."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
