"""The status bar: model, device, speed of the last reply, index state, sandbox."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget


class StatusBar(Widget):
    """One line at the bottom of the chat. Fields are reactive: set them, the bar redraws."""

    DEFAULT_CSS = """
    StatusBar {
        height: 1;
        background: $panel;
        color: $text-muted;
        padding: 0 1;
    }
    """

    model: reactive[str] = reactive("loading model…")
    device: reactive[str] = reactive("")
    speed: reactive[str] = reactive("")
    index: reactive[str] = reactive("index: …")
    sandbox: reactive[str] = reactive("sandbox: …")
    busy: reactive[str] = reactive("")

    WARN_MARKERS = ("none", "no model", "NO SANDBOX", "unavailable", "error", "stale", "missing")

    def render(self) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")
        parts = [p for p in (self.busy, self.model, self.device, self.speed, self.index, self.sandbox) if p]
        for i, part in enumerate(parts):
            if i:
                text.append(" │ ", style="dim")
            warn = any(marker in part for marker in self.WARN_MARKERS)
            style = "bold yellow" if warn else ("bold" if part is self.busy else "")
            text.append(part, style=style)
        return text
