"""A tool call in the transcript: tool, arguments, then status, duration and the result (collapsible).

Code-like arguments (``code``, ``command``, ``content``, ``patch``) are shown highlighted; the rest
as compact JSON. A result longer than ``PREVIEW_LINES`` starts collapsed; a result the agent cut to
its budget says so in the title and on its last line.
"""

from __future__ import annotations

import json
from typing import Any

from rich.syntax import Syntax
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Collapsible, Static

PREVIEW_LINES = 12
MAX_SHOWN_CHARS = 20_000  # of a result, in the card (the model's copy is the agent's business)
CODE_ARGS = {"code": "python", "command": "bash", "content": None, "patch": "diff", "script": "bash"}
STATUS_ICONS = {"running": "…", "waiting": "?", "ok": "✓", "error": "✗", "rejected": "⊘", "denied": "⊘",
                "cancelled": "⊘"}


def format_arguments(name: str, arguments: dict[str, Any]) -> list[Any]:
    """Renderables for the arguments: short ones on one line, code blocks highlighted."""
    rest = {k: v for k, v in arguments.items() if not (k in CODE_ARGS and isinstance(v, str) and v)}
    out: list[Any] = []
    if rest:
        out.append(Text(json.dumps(rest, ensure_ascii=False), style="dim", overflow="fold"))
    for key, lexer in CODE_ARGS.items():
        value = arguments.get(key)
        if isinstance(value, str) and value:
            if lexer is None:  # file content: guess from the path
                lexer = Syntax.guess_lexer(str(arguments.get("path", "")), value)
            out.append(Syntax(value.rstrip("\n"), lexer, theme="ansi_dark", background_color="default",
                              word_wrap=True))
    return out


QUIET_KEYS = {"tool", "ok", "duration_s"}  # shown elsewhere on the card


def format_result(output: str) -> Text:
    """A result as a person reads it: a program's stdout, then its stderr (red), then the error and
    the other fields one per line; output that is not a JSON object is shown as it is."""
    try:
        data = json.loads(output)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return Text(output.rstrip("\n") or "(no output)")
    text = Text()
    for key, style in (("stdout", ""), ("stderr", "red")):
        value = data.get(key)
        if isinstance(value, str) and value:
            text.append(value if value.endswith("\n") else value + "\n", style=style)
    if data.get("error"):
        text.append(f"error: {data['error']}\n", style="bold red")
    for key, value in data.items():
        if key in QUIET_KEYS or key in ("stdout", "stderr", "error") or value in (False, "", None, [], {}):
            continue
        shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        text.append(f"{key}: {shown}\n", style="dim")
    text.rstrip()
    return text if text.plain else Text("(no output)")


class ToolCard(Vertical):
    DEFAULT_CSS = """
    ToolCard {
        height: auto;
        margin: 1 0 0 2;
        padding: 0 1;
        border: round $panel-lighten-2;
    }
    ToolCard.-ok { border: round $success 60%; }
    ToolCard.-error { border: round $error 70%; }
    ToolCard.-rejected, ToolCard.-denied, ToolCard.-cancelled { border: round $warning 60%; }
    ToolCard.-waiting { border: round $warning; }
    ToolCard .tool-args { height: auto; }
    ToolCard Collapsible { padding: 0; margin: 0; border: none; background: transparent; }
    ToolCard Collapsible Contents { padding: 0 0 0 2; }
    ToolCard .tool-output { height: auto; color: $text-muted; }
    """

    def __init__(self, call_id: str, name: str, arguments: dict[str, Any]) -> None:
        super().__init__()
        self.call_id = call_id
        self.tool = name
        self.arguments = arguments
        self.status = "running"
        self.duration_s: float | None = None
        self.output = ""
        self.truncated = False

    def compose(self) -> ComposeResult:
        for renderable in format_arguments(self.tool, self.arguments):
            yield Static(renderable, classes="tool-args")

    def on_mount(self) -> None:
        self._show_title()

    def _show_title(self) -> None:
        icon = STATUS_ICONS.get(self.status, "·")
        title = f"{icon} {self.tool}"
        subtitle = self.status if self.duration_s is None else f"{self.status} · {self.duration_s:.2f}s"
        self.border_title = title
        self.border_subtitle = subtitle
        for status in STATUS_ICONS:
            self.set_class(status == self.status, f"-{status}")

    def set_waiting(self) -> None:
        self.status = "waiting"
        self._show_title()
        self.border_subtitle = "waiting for your approval"

    def finish(self, status: str, output: str, truncated: bool, duration_s: float | None) -> None:
        """Show the result: status icon, duration, the output in a collapsible."""
        self.status = status
        self.output = output
        self.truncated = truncated
        self.duration_s = duration_s
        self._show_title()
        body = format_result(output)
        cut = truncated or len(body) > MAX_SHOWN_CHARS
        if len(body) > MAX_SHOWN_CHARS:
            body = body[:MAX_SHOWN_CHARS]
        body.overflow = "fold"
        lines = body.plain.count("\n") + 1
        title = f"result · {lines} line{'s' if lines != 1 else ''}" + (" · truncated" if cut else "")
        if cut:
            body.append("\n[… output truncated]", style="bold yellow")
        collapsible = Collapsible(Static(body, classes="tool-output", markup=False), title=title,
                                  collapsed=lines > PREVIEW_LINES)
        self.mount(collapsible)
