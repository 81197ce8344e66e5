"""The prompt: multi-line input with history and slash-command completion.

Enter sends; shift+enter, alt+enter or ctrl+j add a line. ↑ on the first line and ↓ on the last
walk the history. While a ``/command`` is being typed, the completion list shows above: ↑/↓ pick,
Tab (or Enter) completes.
"""

from __future__ import annotations

from textual import events
from textual.binding import Binding
from textual.widgets import TextArea

from assistant.tui.history import PromptHistory
from assistant.tui.messages import PromptSubmitted
from assistant.tui.widgets.command_menu import CommandMenu

NEWLINE_KEYS = ("shift+enter", "alt+enter", "ctrl+j")


class PromptArea(TextArea):
    DEFAULT_CSS = """
    PromptArea {
        height: auto;
        min-height: 3;
        max-height: 12;
        margin: 0 1;
        border: round $primary 60%;
        background: $surface;
    }
    PromptArea:focus {
        border: round $primary;
    }
    """

    BINDINGS = [
        Binding("up", "history_back", "history", show=False),
        Binding("down", "history_forward", "history", show=False),
        Binding("tab", "complete", "complete", show=False),
    ]

    def __init__(self, history: PromptHistory, **kwargs) -> None:
        super().__init__(soft_wrap=True, show_line_numbers=False, tab_behavior="focus", compact=False,
                         highlight_cursor_line=False, **kwargs)
        self.prompt_history = history
        self.border_title = "message · Enter send · shift+Enter new line · / commands"

    @property
    def menu(self) -> CommandMenu | None:
        try:
            return self.screen.query_one(CommandMenu)
        except Exception:
            return None

    async def _on_key(self, event: events.Key) -> None:
        if event.key == "enter":
            event.stop()
            event.prevent_default()
            if self.menu is not None and self.menu.shown and self._complete():
                return
            self.submit()
            return
        if event.key in NEWLINE_KEYS:
            event.stop()
            event.prevent_default()
            self.insert("\n")
            return
        await super()._on_key(event)

    def submit(self) -> None:
        text = self.text.strip("\n")
        if not text.strip():
            return
        self.prompt_history.add(text)
        self.clear()
        if self.menu is not None:
            self.menu.hide()
        self.post_message(PromptSubmitted(text))

    def _on_text_area_changed(self, event: TextArea.Changed) -> None:
        if self.menu is not None:
            self.menu.show_for(self.text)

    def _complete(self) -> bool:
        """Complete the highlighted command; False when nothing changed (the text is already it)."""
        menu = self.menu
        if menu is None or not menu.shown:
            return False
        name = menu.chosen()
        if name is None:
            return False
        completed = f"/{name} "
        menu.hide()
        if self.text.strip() == f"/{name}":
            return False
        self.load_text(completed)
        self.move_cursor(self.document.end)
        return True

    def action_complete(self) -> None:
        if not self._complete():
            self.screen.focus_next()

    def action_history_back(self) -> None:
        if self.menu is not None and self.menu.shown:
            self.menu.action_cursor_up()
            return
        if self.cursor_at_first_line:
            entry = self.prompt_history.previous(self.text)
            if entry is not None:
                self._show(entry)
            return
        self.action_cursor_up()

    def action_history_forward(self) -> None:
        if self.menu is not None and self.menu.shown:
            self.menu.action_cursor_down()
            return
        if self.cursor_at_last_line:
            entry = self.prompt_history.next()
            if entry is not None:
                self._show(entry)
            return
        self.action_cursor_down()

    def _show(self, text: str) -> None:
        self.load_text(text)
        self.move_cursor(self.document.end)
        if self.menu is not None:
            self.menu.hide()
