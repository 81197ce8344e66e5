"""The assistant's Textual app: ``assistant`` (no subcommand) opens it in the current directory.

THE RULE OF THIS APP: slow work (loading the model, a turn of the agent, indexing, the sandbox,
the databases) runs in ``@work(thread=True, exclusive=True, exit_on_error=False, group=...)``
workers that NEVER touch widgets. They post messages (``assistant.tui.messages``); the ``@on``
handlers below run on the event loop and own all state shown on screen. The agent itself is plain
Python (``assistant.agent``) driven through ``SessionController``; approvals cross back into the
worker through a ``Future`` the approval screen resolves.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import App
from textual.binding import Binding

from assistant.agent import events as ev
from assistant.tui import commands
from assistant.tui.controller import (
    IndexProgress,
    LaunchOptions,
    SessionController,
    StartupState,
    sandbox_label,
)
from assistant.tui.history import PromptHistory, default_history_path
from assistant.tui.messages import (
    AgentEventPosted,
    ApprovalNeeded,
    Note,
    PromptSubmitted,
    RateRequested,
    SessionReady,
    StatusChanged,
    TextArrived,
    TurnEnded,
)
from assistant.tui.palette import SlashCommandsProvider
from assistant.tui.screens.approval import ApprovalScreen
from assistant.tui.screens.chat import ChatScreen
from assistant.tui.screens.reason import Rating, ReasonScreen
from assistant.tui.screens.sessions import SessionsScreen
from assistant.tui.widgets.assistant_reply import AssistantReply

# Key bindings as the user reads them (/help and the README show this table).
KEYS: list[tuple[str, str]] = [
    ("Enter", "send the message (or complete the highlighted /command)"),
    ("shift+Enter, alt+Enter, ctrl+J", "new line in the message"),
    ("↑ / ↓", "previous / next message from the history (on the first / last line)"),
    ("Tab", "complete a /command"),
    ("Esc", "cancel the reply being generated (within one token)"),
    ("ctrl+↑ / ctrl+↓", "focus the previous / next reply"),
    ("+ / -", "thumbs-up / thumbs-down on the focused reply (then an optional reason)"),
    ("y / a / n / Esc", "in an approval: allow once / allow always / reject (with an optional instruction) / reject"),
    ("ctrl+p", "command palette (the slash commands)"),
    ("F1", "help"),
    ("ctrl+q", "quit"),
]
# Agent notices about degraded parts that the start-up notes and the status bar already show.
SHOWN_AT_START = ("no codebase index", "no sandbox")


class AssistantApp(App):
    """The chat. ``options`` says where (project), with what (model), and whether to resume."""

    TITLE = "assistant"
    CSS_PATH = "app.tcss"
    COMMANDS = App.COMMANDS | {SlashCommandsProvider}
    BINDINGS = [
        Binding("escape", "cancel_generation", "cancel", show=True),
        Binding("f1", "slash_help", "help", show=True),
        Binding("ctrl+q", "slash_quit", "quit", show=True, priority=True),
    ]

    def __init__(self, options: LaunchOptions, history: PromptHistory | None = None) -> None:
        super().__init__()
        self.options = options
        self.prompt_history = history if history is not None else PromptHistory(default_history_path())
        self.controller = SessionController(options, on_event=self._post_event, on_status=self._post_status,
                                            ask=self._ask)
        self.ready = False
        self.generating = False
        self.state: StartupState | None = None
        self._reply: AssistantReply | None = None  # the segment text deltas go to now
        self._turn_replies: list[AssistantReply] = []
        self._turn_id: str | None = None
        self._pending: list[Future] = []  # approvals a worker waits on
        self._notices_shown: set[str] = set()
        self._closing = False
        self._text_lock = threading.Lock()
        self._text_parts: list[tuple[int, str]] = []  # streamed text not shown yet, by segment
        self._segment = 0
        self._flush_queued = False
        self.turns_finished: list[ev.TurnFinished] = []  # what tests and /feedback look at
        self.ratings: dict[str, tuple[int, int | None]] = {}  # turn id -> (value, feedback id)

    # ---- callbacks the controller calls from worker threads (they only post) -------------------

    def _post_event(self, event: Any) -> None:
        """Post an agent event. Text deltas are coalesced: while a ``TextArrived`` is queued, more text
        joins its segment instead of queueing another message, so a fast model never floods the
        event loop. Any other event starts a new segment, which keeps text and tool cards in order."""
        with self._text_lock:
            if isinstance(event, ev.TextDelta):
                self._text_parts.append((self._segment, event.text))
                if self._flush_queued:
                    return
                self._flush_queued = True
                self.post_message(TextArrived(self._segment))
            else:
                self._segment += 1
                self._flush_queued = False
                self.post_message(AgentEventPosted(event))

    def _take_text(self, segment: int) -> str:
        with self._text_lock:
            taken = "".join(text for seg, text in self._text_parts if seg == segment)
            self._text_parts = [(seg, text) for seg, text in self._text_parts if seg != segment]
            if segment == self._segment:
                self._flush_queued = False
            return taken

    def _post_status(self, **fields: Any) -> None:
        self.post_message(StatusChanged(**fields))

    def _ask(self, request: ev.ApprovalRequest) -> ev.ApprovalDecision:
        """The agent's approver: blocks the worker until the approval screen answers."""
        if self._closing:
            return ev.ApprovalDecision("reject")
        reply: Future = Future()
        self._pending.append(reply)
        self.post_message(ApprovalNeeded(request, reply))
        try:
            return reply.result()
        finally:
            if reply in self._pending:
                self._pending.remove(reply)

    # ---- start-up ------------------------------------------------------------------------------

    def get_default_screen(self) -> ChatScreen:
        return ChatScreen(self.prompt_history)

    @property
    def chat(self) -> ChatScreen:
        screen = self.screen_stack[0]
        assert isinstance(screen, ChatScreen)
        return screen

    def on_mount(self) -> None:
        resume = self.options.resume
        if resume == "list":
            self._list_sessions(at_start=True)
        else:
            self._start(None if resume is None else resume)

    @work(thread=True, exclusive=True, exit_on_error=False, group="start")
    def _start(self, session_id: str | None) -> None:
        try:
            if session_id == "latest":
                session_id = self.controller.latest_session()
                if session_id is None:
                    self.post_message(Note("No saved session for this project yet; starting a new one."))
            state = self.controller.start(session_id)
        except Exception as exc:
            self.post_message(Note(f"Start-up failed: {exc}", "error"))
            return
        self.post_message(SessionReady(state))

    @on(SessionReady)
    async def handle_session_ready(self, message: SessionReady) -> None:
        state: StartupState = message.state
        self.state = state
        status = self.chat.status
        status.model = state.model_label
        status.device = state.device
        status.index = f"index: {state.index_state}"
        status.sandbox = sandbox_label(state.sandbox_backend, state.sandbox_isolation, state.sandbox_note)
        transcript = self.chat.transcript
        if state.model_help:
            await transcript.add_notice(state.model_help, "warning", markdown=True)
        for text, level in state.notices:
            await transcript.add_notice(text, level, markdown=True)
        if state.history:
            await self._replay(state.history)
            await transcript.add_notice(f"Resumed session {state.session_id}.")
        self.ready = True  # last: what the user sends comes after the start-up notes

    async def _replay(self, turns: list[tuple[str, list[dict[str, Any]]]]) -> None:
        """Show a resumed conversation; its replies keep their turn ids, so they can still be rated."""
        transcript = self.chat.transcript
        for turn_id, messages in turns:
            card = None
            for message in messages:
                role, content = message.get("role"), message.get("content")
                text = content if isinstance(content, str) else ""
                if role == "user":
                    await transcript.add_user(text)
                elif role == "assistant" and message.get("tool_call"):
                    call = message["tool_call"]
                    card = await transcript.add_tool(f"old-{id(message)}", call.get("name", "?"),
                                                     call.get("arguments", {}))
                elif role == "tool" and card is not None:
                    try:
                        ok = bool(json.loads(text).get("ok"))
                    except (ValueError, AttributeError):
                        ok = False
                    card.finish("ok" if ok else "error", text, False, None)
                    card = None
                elif role == "assistant" and text.strip():
                    reply = await transcript.add_reply(turn_id, text)
                    await reply.finish(text, "(resumed)")

    # ---- the prompt and slash commands ---------------------------------------------------------

    @on(PromptSubmitted)
    async def handle_prompt(self, message: PromptSubmitted) -> None:
        text = message.text
        parsed = commands.parse(text.strip())
        if parsed is not None:
            command, argument = parsed
            await self.run_action(f"{command.action}({argument!r})")
            return
        if text.strip().startswith("/") and " " not in text.strip():
            await self.chat.transcript.add_notice(f"Unknown command {text.strip()}: /help lists them.", "warning")
            return
        await self._send(text, plan=False)

    async def _send(self, text: str, plan: bool) -> None:
        transcript = self.chat.transcript
        if not self.ready:
            self.notify("Still starting up; try again in a moment.", severity="warning")
            return
        if self.generating:
            self.notify("A reply is still being generated (Esc cancels it).", severity="warning")
            return
        await transcript.add_user(text)
        if self.controller.loaded is None:
            await transcript.add_notice(self.state.model_help if self.state and self.state.model_help else
                                        "No model loaded.", "warning", markdown=True)
            return
        self.generating = True
        self._reply, self._turn_replies, self._turn_id = None, [], None
        self.chat.status.busy = "planning… (Esc cancels)" if plan else "generating… (Esc cancels)"
        transcript.anchor()
        self._run_turn(text, plan, self.controller.new_turn())

    @work(thread=True, exclusive=True, exit_on_error=False, group="turn")
    def _run_turn(self, text: str, plan: bool, cancel: threading.Event) -> None:
        try:
            finished = self.controller.run_turn(text, cancel, plan=plan)
        except Exception as exc:
            self.post_message(TurnEnded(None, f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(TurnEnded(finished))

    def action_cancel_generation(self) -> None:
        if self.generating:
            self.controller.cancel_turn()
            self.chat.status.busy = "cancelling…"
        elif self.chat.query_one("#command-menu").shown:
            self.chat.query_one("#command-menu").hide()

    # ---- agent events --------------------------------------------------------------------------

    @on(AgentEventPosted)
    async def handle_agent_event(self, message: AgentEventPosted) -> None:
        event = message.event
        transcript = self.chat.transcript
        if isinstance(event, ev.TurnStarted):
            self._turn_id = event.turn_id
        elif isinstance(event, ev.TextDelta):
            await self._show_text(event.text)
        elif isinstance(event, ev.ToolCallStarted):
            await self._close_segment()
            await transcript.add_tool(event.call_id, event.name, event.arguments)
        elif isinstance(event, ev.ToolCallFinished):
            card = transcript.tool_card(event.call_id)
            if card is None:
                card = await transcript.add_tool(event.call_id, event.name, {})
            card.finish(event.status, event.output, event.truncated, event.duration_s)
        elif isinstance(event, ev.PlanProposed):
            await self._close_segment()
            steps = "\n".join(f"{i}. {step}" for i, step in enumerate(event.steps, 1))
            await transcript.add_notice(f"**Plan**\n\n{steps}", "info", markdown=True)
        elif isinstance(event, ev.PlanStep):
            await self._close_segment()
            await transcript.add_notice(f"plan step {event.index}/{event.total} {event.status}: {event.text}")
        elif isinstance(event, ev.Notice):
            if (event.text in self._notices_shown or event.text.lower().startswith(SHOWN_AT_START)) \
                    and event.level != "error":
                return  # the agent repeats these every turn; the start-up notes and the status bar say them
            self._notices_shown.add(event.text)
            await self._close_segment()
            await transcript.add_notice(event.text, event.level)
        elif isinstance(event, ev.TurnFinished):
            await self._finish_turn(event)
        elif isinstance(event, IndexProgress):
            self._index_progress(event)

    @on(TextArrived)
    async def handle_text(self, message: TextArrived) -> None:
        await self._show_text(self._take_text(message.segment))

    async def _show_text(self, text: str) -> None:
        if not text:
            return
        if self._reply is None:
            self._reply = await self.chat.transcript.add_reply(self._turn_id)
            self._turn_replies.append(self._reply)
        await self._reply.append(text)

    async def _close_segment(self) -> None:
        if self._reply is not None:
            await self._reply.finish(None, "")
            self._reply = None

    async def _finish_turn(self, finished: ev.TurnFinished) -> None:
        self.turns_finished.append(finished)
        transcript = self.chat.transcript
        reply = self._reply
        shown = "".join(r.text for r in self._turn_replies).strip()
        if reply is None and finished.text.strip() and finished.text.strip() not in shown:
            reply = await transcript.add_reply(finished.turn_id)
            self._turn_replies.append(reply)
            await reply.append(finished.text)
        if reply is None and self._turn_replies:
            reply = self._turn_replies[-1]
        speed = f"{finished.tokens_per_s:.1f} tok/s" if finished.tokens_per_s else ""
        stats = " · ".join(p for p in (f"{finished.tokens} tokens" if finished.tokens else "", speed,
                                       f"{finished.steps} step{'s' if finished.steps != 1 else ''}",
                                       finished.stop_reason) if p)
        for segment in self._turn_replies:
            segment.turn_id = finished.turn_id
            if segment is not reply:
                await segment.finish(None, "")
                segment.add_class("-segment")
        if reply is not None:
            await reply.finish(None, stats)
        if speed:
            self.chat.status.speed = speed
        if finished.changed_files:
            await transcript.add_notice("changed: " + ", ".join(finished.changed_files) + "  (/undo reverts)")
        self._reply = None

    @on(TurnEnded)
    async def handle_turn_ended(self, message: TurnEnded) -> None:
        self.generating = False
        self.chat.status.busy = ""
        if message.error:
            await self.chat.transcript.add_notice(f"The turn failed: {message.error}", "error")

    @on(StatusChanged)
    def handle_status(self, message: StatusChanged) -> None:
        status = self.chat.status
        for name, value in message.fields.items():
            setattr(status, name, value)

    def _index_progress(self, progress: IndexProgress) -> None:
        status = self.chat.status
        if progress.stage in ("scan", "embed"):
            what = "scanning" if progress.stage == "scan" else "embedding"
            status.index = f"index: re-indexing, {what} {progress.done}/{progress.total}"
        elif progress.stage == "error":
            status.index = "index: error"
            self.notify(progress.line, severity="error")
        else:
            status.index = "index: fresh"

    @on(Note)
    async def handle_note(self, message: Note) -> None:
        await self.chat.transcript.add_notice(message.text, message.level, markdown=message.markdown)

    # ---- approvals -----------------------------------------------------------------------------

    @on(ApprovalNeeded)
    def handle_approval(self, message: ApprovalNeeded) -> None:
        request: ev.ApprovalRequest = message.request
        card = self.chat.transcript.tool_card(request.call_id)
        if card is not None:
            card.set_waiting()
        self.bell()
        self.notify(request.summary or request.tool, title="Approval needed", severity="warning", timeout=8)
        self.chat.status.busy = "waiting for your approval"

        def answered(decision: ev.ApprovalDecision | None) -> None:
            if self.generating:
                self.chat.status.busy = "generating… (Esc cancels)"
            if not message.reply.done():
                message.reply.set_result(decision or ev.ApprovalDecision("reject"))

        self.push_screen(ApprovalScreen(request), answered)

    # ---- ratings -------------------------------------------------------------------------------

    @on(RateRequested)
    def handle_rate_requested(self, message: RateRequested) -> None:
        def rated(result: Rating | None) -> None:
            if result is not None:
                self._rate(message.turn_id, result.value, result.reason)

        self.push_screen(ReasonScreen(message.value), rated)

    @work(thread=True, exclusive=False, exit_on_error=False, group="rate")
    def _rate(self, turn_id: str, value: int, reason: str | None) -> None:
        try:
            feedback_id = self.controller.rate(turn_id, value, reason)
        except Exception as exc:
            self.post_message(Note(f"Rating not saved: {exc}", "error"))
            return
        self.call_from_thread(self._rated, turn_id, value, feedback_id)

    def _rated(self, turn_id: str, value: int, feedback_id: int | None) -> None:
        self.ratings[turn_id] = (value, feedback_id)
        for reply in self.chat.transcript.replies():
            if reply.turn_id == turn_id:
                reply.show_rating(value)
        where = f" (feedback #{feedback_id})" if feedback_id is not None else " (no feedback store: not saved)"
        self.notify(f"Rated {'+1' if value > 0 else '-1'}{where}. Thank you.")

    # ---- slash command actions (also the palette's) --------------------------------------------

    async def action_slash_help(self, argument: str = "") -> None:
        await self.chat.transcript.add_notice(commands.help_markdown(KEYS), "info", markdown=True)

    async def action_slash_clear(self, argument: str = "") -> None:
        if self.generating:
            self.notify("Cancel the reply first (Esc).", severity="warning")
            return
        await self.chat.transcript.clear()
        self._reply, self._turn_replies = None, []
        self._slow("new session", lambda: self.controller.new_session() and "New conversation.")

    async def action_slash_index(self, argument: str = "") -> None:
        self.chat.status.index = "index: re-indexing…"
        self._slow("index", lambda: self.controller.reindex().line())

    async def action_slash_search(self, argument: str = "") -> None:
        if not argument:
            await self.chat.transcript.add_notice("Usage: /search QUERY", "warning")
            return
        self._slow("search", lambda: self.controller.search(argument), markdown=True)

    async def action_slash_plan(self, argument: str = "") -> None:
        if not argument:
            await self.chat.transcript.add_notice("Usage: /plan OBJECTIVE (the model plans with read-only tools, "
                                                  "you approve the plan, then it runs step by step)", "warning")
            return
        await self._send(argument, plan=True)

    async def action_slash_undo(self, argument: str = "") -> None:
        if self.generating:
            self.notify("Cancel the reply first (Esc).", severity="warning")
            return

        def undo() -> str:
            restored = self.controller.undo()
            return "Undone: restored " + ", ".join(restored)

        self._slow("undo", undo)

    async def action_slash_model(self, argument: str = "") -> None:
        if not argument:
            self._slow("model", self.controller.model_info, markdown=True)
            return
        if self.generating:
            self.notify("Cancel the reply first (Esc).", severity="warning")
            return

        def switch() -> str:
            state = self.controller.switch_model(argument)
            self.post_message(StatusChanged(model=state.model_label, device=state.device, speed=""))
            return f"Switched to {state.model_label}; a new conversation starts."

        self._slow("model", switch, markdown=True)

    async def action_slash_feedback(self, argument: str = "") -> None:
        word, _, reason = argument.partition(" ")
        if word in ("+", "-", "+1", "-1", "up", "down"):
            if not self.turns_finished:
                await self.chat.transcript.add_notice("Nothing to rate yet.", "warning")
                return
            value = 1 if word in ("+", "+1", "up") else -1
            self._rate(self.turns_finished[-1].turn_id, value, reason.strip() or None)
            return

        def stats() -> str:
            store = self.controller.feedback
            if store is None:
                return "No feedback store this session."
            summary = store.stats()
            mine = ", ".join(f"{turn}: {'+1' if v > 0 else '-1'}" for turn, (v, _) in self.ratings.items()) or "none"
            rows = "\n".join(f"- {k}: {v}" for k, v in summary.items())
            return (f"### Feedback\n\n{rows}\n\nThis session's ratings: {mine}\n\n"
                    "Rate a reply: focus it (ctrl+↑) and press `+` or `-`, click its buttons, or "
                    "`/feedback - REASON` for the last reply. `assistant feedback list|stats|export` outside.")

        self._slow("feedback", stats, markdown=True)

    async def action_slash_retrain(self, argument: str = "") -> None:
        def queue() -> str:
            path = self.controller.queue_retrain(argument)
            return (f"Retraining queued ({path.name}). `assistant retrain` (or the nightly job) takes queued "
                    "requests; it trains on your ratings, checks the candidate against the gate, and promotes "
                    "it only if nothing regressed.")

        self._slow("retrain", queue)

    async def action_slash_sandbox(self, argument: str = "") -> None:
        self._slow("sandbox", self.controller.sandbox_report, markdown=True)

    async def action_slash_sessions(self, argument: str = "") -> None:
        if self.generating:
            self.notify("Cancel the reply first (Esc).", severity="warning")
            return
        self._list_sessions(at_start=False)

    async def action_slash_quit(self, argument: str = "") -> None:
        self.exit()

    @work(thread=True, exclusive=False, exit_on_error=False, group="slow")
    def _slow(self, what: str, job, markdown: bool = False) -> None:
        """Run one slow command off the event loop; its text (or its error) lands in the transcript."""
        try:
            text = job()
        except Exception as exc:
            self.post_message(Note(f"{what}: {exc}", "error"))
            if what == "index":
                self.post_message(StatusChanged(index="index: error"))
            return
        if text:
            self.post_message(Note(str(text), "info", markdown=markdown))

    @work(thread=True, exclusive=True, exit_on_error=False, group="sessions")
    def _list_sessions(self, at_start: bool) -> None:
        try:
            sessions = self.controller.sessions()
        except Exception as exc:
            sessions = []
            self.post_message(Note(f"sessions: {exc}", "error"))
        self.call_from_thread(self._pick_session, sessions, at_start)

    def _pick_session(self, sessions: list, at_start: bool) -> None:
        def picked(session_id: str | None) -> None:
            if at_start:
                self._start(session_id)
            elif session_id is not None:
                self._resume(session_id)

        self.push_screen(SessionsScreen(sessions), picked)

    @work(thread=True, exclusive=True, exit_on_error=False, group="start")
    def _resume(self, session_id: str) -> None:
        try:
            state = self.controller.resume(session_id)
        except Exception as exc:
            self.post_message(Note(f"Cannot resume {session_id}: {exc}", "error"))
            return
        self.call_from_thread(self._show_resumed, state)

    async def _show_resumed(self, state: StartupState) -> None:
        await self.chat.transcript.clear()
        await self._replay(state.history)
        await self.chat.transcript.add_notice(f"Resumed session {state.session_id}.")

    # ---- shutdown ------------------------------------------------------------------------------

    async def on_unmount(self) -> None:
        self._closing = True
        self.controller.cancel_turn()
        for reply in list(self._pending):  # a worker waiting on an approval: the answer is no
            if not reply.done():
                reply.set_result(ev.ApprovalDecision("reject"))
        self.workers.cancel_all()
        await asyncio.to_thread(self.controller.close)  # waits for a running turn to stop


def run_app(args: argparse.Namespace) -> int:
    """``assistant`` with no subcommand (see ``assistant/cli.py``)."""
    from common.errors import UsageError

    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UsageError("the chat needs a terminal", "run it in a terminal, or use `assistant agent \"OBJECTIVE\"` "
                         "for a headless run")
    resume = getattr(args, "resume", None)
    if getattr(args, "continue_", False):
        resume = "latest"
    options = LaunchOptions(project=Path.cwd(), model=args.model, resume=resume)
    AssistantApp(options).run()
    return 0
