"""Approve a tool call: Allow once (the default), Allow always, or Reject with an optional instruction.

A typed modal (``ModalScreen[ApprovalDecision]``): the agent's worker is blocked until it is
dismissed. Writes show their unified diff before anything is written. Keys: Enter (the focused
choice, Allow once at first), ``y`` once, ``a`` always, ``n`` reject (then type an instruction for
the model, or just Enter), Esc reject.
"""

from __future__ import annotations

from rich.syntax import Syntax
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from assistant.agent.events import ApprovalDecision, ApprovalRequest
from assistant.tui.widgets.tool_card import format_arguments


class ApprovalScreen(ModalScreen[ApprovalDecision]):
    DEFAULT_CSS = """
    ApprovalScreen {
        align: center middle;
        background: $background 60%;
    }
    ApprovalScreen > #approval {
        width: 90%;
        max-width: 120;
        height: auto;
        max-height: 90%;
        border: thick $warning;
        background: $surface;
        padding: 1 2;
    }
    ApprovalScreen #approval-title { text-style: bold; color: $warning; }
    ApprovalScreen #approval-summary { margin: 0 0 1 0; }
    ApprovalScreen #approval-body { height: auto; max-height: 24; border: round $panel-lighten-2; }
    ApprovalScreen #approval-buttons { height: auto; margin: 1 0 0 0; }
    ApprovalScreen #approval-buttons Button { margin: 0 2 0 0; }
    ApprovalScreen #instruction { display: none; margin: 1 0 0 0; }
    ApprovalScreen.-rejecting #instruction { display: block; }
    """

    BINDINGS = [
        Binding("y", "choose('once')", "allow once", show=True),
        Binding("a", "choose('always')", "allow always", show=True),
        Binding("n", "start_reject", "reject", show=True),
        Binding("escape", "choose('reject')", "reject", show=True),
        Binding("left", "app.focus_previous", show=False),
        Binding("right", "app.focus_next", show=False),
    ]

    def __init__(self, request: ApprovalRequest) -> None:
        super().__init__()
        self.request = request

    def compose(self) -> ComposeResult:
        r = self.request
        what = "follow this plan" if r.tool == "plan" else "change your files" if r.diff else "run"
        with Vertical(id="approval"):
            yield Label(f"The assistant wants to {what}" + ("" if r.tool == "plan" else f": {r.tool}"),
                        id="approval-title")
            yield Label(r.summary or "", id="approval-summary", markup=False)
            with VerticalScroll(id="approval-body"):
                if r.tool == "plan":
                    steps = r.arguments.get("steps") or []
                    yield Static("\n".join(f"{i}. {step}" for i, step in enumerate(steps, 1)), markup=False,
                                 id="approval-plan")
                elif r.diff:
                    yield Static(Syntax(r.diff.rstrip("\n"), "diff", theme="ansi_dark", background_color="default",
                                        word_wrap=True), id="approval-diff")
                else:
                    for renderable in format_arguments(r.tool, r.arguments):
                        yield Static(renderable, classes="approval-args")
            with Horizontal(id="approval-buttons"):
                yield Button("Allow once · y", id="once", variant="success")
                yield Button("Allow always · a", id="always", variant="primary")
                yield Button("Reject · n", id="reject", variant="error")
            yield Input(placeholder="Reject: tell the model what to do instead (optional), Enter to send",
                        id="instruction")

    def on_mount(self) -> None:
        self.query_one("#once", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "reject":
            self.action_start_reject()
        else:
            self.action_choose(event.button.id or "once")

    def action_choose(self, choice: str) -> None:
        if choice == "reject":
            text = self.query_one("#instruction", Input).value.strip() if self.has_class("-rejecting") else ""
            self.dismiss(ApprovalDecision("reject", text or None))
        else:
            self.dismiss(ApprovalDecision(choice))  # type: ignore[arg-type]

    def action_start_reject(self) -> None:
        """Reject: show the instruction field (Enter sends, with or without an instruction)."""
        if self.has_class("-rejecting"):
            self.action_choose("reject")
            return
        self.add_class("-rejecting")
        self.query_one("#instruction", Input).focus()

    @on(Input.Submitted, "#instruction")
    def _instruction(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_choose("reject")
