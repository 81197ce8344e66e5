"""The main screen: the transcript, the command completion, the prompt, the status bar, the footer."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer

from assistant.tui.history import PromptHistory
from assistant.tui.widgets.assistant_reply import AssistantReply
from assistant.tui.widgets.command_menu import CommandMenu
from assistant.tui.widgets.prompt import PromptArea
from assistant.tui.widgets.status_bar import StatusBar
from assistant.tui.widgets.transcript import Transcript


class ChatScreen(Screen):
    BINDINGS = [
        Binding("ctrl+up", "focus_reply(-1)", "previous reply", show=False),
        Binding("ctrl+down", "focus_reply(1)", "next reply", show=False),
        Binding("f2", "focus_prompt", "prompt", show=False),
    ]

    def __init__(self, history: PromptHistory) -> None:
        super().__init__()
        self.prompt_history = history

    def compose(self) -> ComposeResult:
        yield Transcript(id="transcript")
        yield CommandMenu(id="command-menu")
        yield PromptArea(self.prompt_history, id="prompt")
        yield StatusBar(id="status")
        yield Footer()

    def on_mount(self) -> None:
        self.prompt.focus()

    @property
    def transcript(self) -> Transcript:
        return self.query_one(Transcript)

    @property
    def prompt(self) -> PromptArea:
        return self.query_one(PromptArea)

    @property
    def status(self) -> StatusBar:
        return self.query_one(StatusBar)

    def action_focus_prompt(self) -> None:
        self.prompt.focus()

    def action_focus_reply(self, step: int) -> None:
        """ctrl+↑/↓: move focus between assistant replies (then + / - rate the focused one)."""
        replies = [r for r in self.transcript.replies() if r.display]
        if not replies:
            return
        focused = self.focused
        if isinstance(focused, AssistantReply) and focused in replies:
            index = replies.index(focused) + step
            if index >= len(replies):
                self.prompt.focus()
                return
            index = max(0, index)
        else:
            index = len(replies) - 1 if step < 0 else 0
        replies[index].focus()
        replies[index].scroll_visible()
