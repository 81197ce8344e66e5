"""The conversation: user messages, streamed replies, tool cards and notices, anchored to the bottom.

``anchor()`` keeps the view at the end while a reply streams, until the user scrolls up (then it
stays where they are; scrolling back to the end re-anchors).
"""

from __future__ import annotations

from typing import Any

from textual.containers import VerticalScroll

from assistant.tui.widgets.assistant_reply import AssistantReply
from assistant.tui.widgets.notice import NoticeLine, NoticeMarkdown
from assistant.tui.widgets.tool_card import ToolCard
from assistant.tui.widgets.user_message import UserMessage


class Transcript(VerticalScroll, can_focus=False):
    DEFAULT_CSS = """
    Transcript {
        height: 1fr;
        padding: 0 1 1 1;
        scrollbar-size-vertical: 1;
    }
    """

    def on_mount(self) -> None:
        self.anchor()

    async def add_user(self, text: str) -> UserMessage:
        widget = UserMessage(text)
        await self.mount(widget)
        return widget

    async def add_reply(self, turn_id: str | None, text: str = "") -> AssistantReply:
        widget = AssistantReply(turn_id, text)
        await self.mount(widget)
        return widget

    async def add_tool(self, call_id: str, name: str, arguments: dict[str, Any]) -> ToolCard:
        widget = ToolCard(call_id, name, arguments)
        await self.mount(widget)
        return widget

    async def add_notice(self, text: str, level: str = "info", markdown: bool = False) -> Any:
        widget = NoticeMarkdown(text, level) if markdown else NoticeLine(text, level)
        await self.mount(widget)
        return widget

    def tool_card(self, call_id: str) -> ToolCard | None:
        for card in self.query(ToolCard):
            if card.call_id == call_id:
                return card
        return None

    def replies(self) -> list[AssistantReply]:
        return list(self.query(AssistantReply))

    async def clear(self) -> None:
        await self.remove_children()
