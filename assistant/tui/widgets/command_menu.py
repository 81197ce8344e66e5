"""The slash-command completion list shown above the prompt while a command is being typed."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from assistant.tui.commands import SlashCommand, complete


class CommandMenu(OptionList, can_focus=False):
    DEFAULT_CSS = """
    CommandMenu {
        display: none;
        height: auto;
        max-height: 12;
        margin: 0 1;
        border: round $accent 50%;
        background: $surface;
    }
    CommandMenu.-shown {
        display: block;
    }
    """

    def show_for(self, text: str) -> list[SlashCommand]:
        """Show the commands that complete ``text`` (hide when none do); returns them."""
        matches = complete(text)
        self.clear_options()
        for command in matches:
            label = Text.assemble((f"/{command.name}", "bold"), (f" {command.usage}" if command.usage else "", "dim"),
                                  ("  " + command.help, "italic dim"))
            self.add_option(Option(label, id=command.name))
        self.set_class(bool(matches), "-shown")
        if matches:
            self.highlighted = 0
        return matches

    def hide(self) -> None:
        self.set_class(False, "-shown")

    @property
    def shown(self) -> bool:
        return self.has_class("-shown")

    def chosen(self) -> str | None:
        """The highlighted command's name."""
        option = self.highlighted_option
        return option.id if option is not None else None
