"""A line in the transcript that is not model text: notices, command output, errors."""

from __future__ import annotations

from textual.widgets import Markdown, Static


class NoticeLine(Static):
    DEFAULT_CSS = """
    NoticeLine {
        margin: 1 0 0 0;
        padding: 0 1;
        color: $text-muted;
    }
    NoticeLine.-warning { color: $warning; }
    NoticeLine.-error { color: $error; }
    """

    def __init__(self, text: str, level: str = "info") -> None:
        super().__init__(text, markup=False, classes=f"-{level}")
        self.text = text
        self.level = level


class NoticeMarkdown(Markdown):
    """A longer note (help, search results, how to get a model), rendered as Markdown."""

    DEFAULT_CSS = """
    NoticeMarkdown {
        margin: 1 0 0 0;
        padding: 0 1;
        border-left: outer $warning 40%;
        background: transparent;
    }
    NoticeMarkdown.-info { border-left: outer $panel-lighten-2; }
    """

    def __init__(self, text: str, level: str = "info") -> None:
        super().__init__(text, classes=f"-{level}")
        self.text = text
        self.level = level
