"""One assistant turn in the transcript: streamed Markdown, then its stats and thumbs-up/down.

While the reply streams, text deltas are appended through ``Markdown.get_stream`` (which batches
fragments when they arrive faster than they render); code fences are highlighted by Textual's
Markdown. The reply can take focus (Tab, click, ctrl+↑/↓): ``+``/``-`` then rate it, as do its
buttons.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Label, Markdown, Static
from textual.widgets.markdown import MarkdownStream

from assistant.tui.messages import RateRequested


class AssistantReply(Vertical, can_focus=True):
    DEFAULT_CSS = """
    AssistantReply {
        height: auto;
        margin: 1 0 0 0;
        padding: 0 1;
        border-left: outer $secondary 50%;
    }
    AssistantReply:focus {
        border-left: outer $accent;
        background: $boost;
    }
    AssistantReply > Markdown {
        margin: 0;
        padding: 0;
        background: transparent;
    }
    AssistantReply .reply-footer {
        height: 1;
        display: none;
    }
    AssistantReply.-done .reply-footer {
        display: block;
    }
    AssistantReply .reply-stats {
        width: 1fr;
        color: $text-muted;
    }
    AssistantReply .thumb {
        width: auto;
        height: 1;
        padding: 0 1;
        margin: 0 0 0 1;
        background: $panel;
        color: $text-muted;
    }
    AssistantReply .thumb:hover {
        background: $panel-lighten-2;
        color: $text;
    }
    AssistantReply .thumb.-chosen {
        background: $accent;
        color: $text;
    }
    """

    BINDINGS = [
        Binding("plus,+", "rate(1)", "👍 good reply", key_display="+"),
        Binding("minus,-", "rate(-1)", "👎 bad reply", key_display="-"),
    ]

    def __init__(self, turn_id: str | None = None, text: str = "") -> None:
        super().__init__()
        self.turn_id = turn_id
        self.text = text
        self.rating: int | None = None
        self._stream: MarkdownStream | None = None

    def compose(self) -> ComposeResult:
        yield Markdown(self.text)
        with Horizontal(classes="reply-footer"):
            yield Label("", classes="reply-stats")
            yield ThumbButton("▲ +1", 1, id="thumb-up", classes="thumb")
            yield ThumbButton("▼ -1", -1, id="thumb-down", classes="thumb")

    @property
    def markdown(self) -> Markdown:
        return self.query_one(Markdown)

    async def append(self, fragment: str) -> None:
        """Add streamed text (called on the event loop, from the app's message handler)."""
        if not fragment:
            return
        self.text += fragment
        if self._stream is None:
            self._stream = Markdown.get_stream(self.markdown)
        await self._stream.write(fragment)

    async def finish(self, text: str | None, stats: str) -> None:
        """The turn ended: settle the Markdown, show ``stats`` and the rating buttons."""
        if self._stream is not None:
            await self._stream.stop()
            self._stream = None
        if text is not None and text.strip() and text != self.text:
            self.text = text
            await self.markdown.update(text)
        elif not self.text.strip():
            await self.markdown.update(text or "")
        self.query_one(".reply-stats", Label).update(stats)
        self.add_class("-done")

    def show_rating(self, value: int) -> None:
        self.rating = value
        self.query_one("#thumb-up").set_class(value > 0, "-chosen")
        self.query_one("#thumb-down").set_class(value < 0, "-chosen")

    def action_rate(self, value: int) -> None:
        if self.turn_id is None or not self.has_class("-done"):
            self.notify("This reply can be rated once it has finished.", severity="warning")
            return
        self.post_message(RateRequested(self.turn_id, value))



class ThumbButton(Static):
    """A one-line clickable rating (the reply's ``+``/``-`` keys do the same); never takes focus."""

    def __init__(self, label: str, value: int, **kwargs) -> None:
        super().__init__(label, markup=False, **kwargs)
        self.value = value
        self.tooltip = "good reply (+)" if value > 0 else "bad reply (-)"

    def on_click(self, event) -> None:
        event.stop()
        reply = next((node for node in self.ancestors if isinstance(node, AssistantReply)), None)
        if reply is not None:
            reply.action_rate(self.value)
