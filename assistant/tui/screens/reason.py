"""The optional reason for a thumbs-up/down: Enter saves the rating (reason or not), Esc cancels it."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label


class Rating:
    """What the reason screen returns: the reason (None when left empty)."""

    def __init__(self, value: int, reason: str | None) -> None:
        self.value = value
        self.reason = reason


class ReasonScreen(ModalScreen["Rating | None"]):
    DEFAULT_CSS = """
    ReasonScreen { align: center middle; background: $background 50%; }
    ReasonScreen > Vertical {
        width: 70%; max-width: 90; height: auto; padding: 1 2;
        border: thick $accent; background: $surface;
    }
    ReasonScreen Label { margin: 0 0 1 0; }
    """

    BINDINGS = [Binding("escape", "cancel", "cancel")]

    def __init__(self, value: int) -> None:
        super().__init__()
        self.value = value

    def compose(self) -> ComposeResult:
        word = "good (+1)" if self.value > 0 else "bad (-1)"
        with Vertical():
            yield Label(f"Rate this reply {word}. Why? (optional) Enter saves, Esc cancels.")
            yield Input(placeholder="e.g. ran the wrong test / exactly right", id="reason")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(Rating(self.value, event.value.strip() or None))

    def action_cancel(self) -> None:
        self.dismiss(None)
