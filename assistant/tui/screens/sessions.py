"""The sessions list: pick a past conversation of this project to resume (Enter), or start anew (Esc)."""

from __future__ import annotations

import time

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option


def _age(seconds: float) -> str:
    ago = max(0.0, time.time() - seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if ago >= size:
            return f"{int(ago // size)}{unit} ago"
    return "just now"


class SessionsScreen(ModalScreen["str | None"]):
    """``sessions``: ``SessionInfo``-like objects (id, title, updated, turns, model)."""

    DEFAULT_CSS = """
    SessionsScreen { align: center middle; background: $background 60%; }
    SessionsScreen > Vertical {
        width: 90%; max-width: 120; height: auto; max-height: 80%; padding: 1 2;
        border: thick $primary; background: $surface;
    }
    SessionsScreen OptionList { height: auto; max-height: 24; }
    """

    BINDINGS = [Binding("escape", "dismiss_none", "new session")]

    def __init__(self, sessions: list) -> None:
        super().__init__()
        self.sessions = sessions

    def compose(self) -> ComposeResult:
        with Vertical():
            if self.sessions:
                yield Label("Resume a session (Enter), or Esc for a new one:")
            else:
                yield Label("No saved sessions for this project yet. Esc to start one.")
            options = [
                Option(f"{_age(s.updated):>8}  {s.turns:>3} turns  {s.title or '(untitled)'}  [{s.model}]", id=s.id)
                for s in self.sessions
            ]
            yield OptionList(*options)

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()

    @on(OptionList.OptionSelected)
    def _selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_dismiss_none(self) -> None:
        self.dismiss(None)
