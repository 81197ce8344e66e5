"""Snapshots (pytest-textual-snapshot) of the main screen, an approval and a tool card.

They run the real app on the memorised nano model. Only the decoding speed differs between machines,
so it is pinned before the main screen's picture; everything else on screen is deterministic
(greedy decoding, a fixed model, no sandbox engine and no index in the snapshot project).
Update after an intended change: ``pytest tests/tui/test_snapshots.py --snapshot-update``.
"""

from __future__ import annotations

from assistant.agent import events as ev
from assistant.tui.messages import AgentEventPosted
from tests.memorised_model import HELLO, RUN
from tests.tui.conftest import make_app, send, start, turn, wait_for

SIZE = (100, 32)


async def _started(pilot) -> None:
    await start(pilot)
    pilot.app.chat.prompt.cursor_blink = False  # a blinking cursor would make the picture a coin toss


def test_main_screen(snap_compare, project, memorised_model):
    app = make_app(project, memorised_model)

    async def run_before(pilot):
        await _started(pilot)
        await turn(pilot, HELLO)
        app.chat.status.speed = "123.4 tok/s"  # the one machine-dependent figure
        reply = app.chat.transcript.replies()[-1]
        reply.query_one(".reply-stats").update("44 tokens · 123.4 tok/s · 1 step · answer")
        await pilot.pause(0.1)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_approval(snap_compare, project, memorised_model):
    app = make_app(project, memorised_model)

    async def run_before(pilot):
        await _started(pilot)
        await send(pilot, RUN)
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "ApprovalScreen", what="the approval")
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_tool_card(snap_compare, project, memorised_model):
    """A finished call with a long, truncated result (collapsed), and a short one (open)."""
    app = make_app(project, memorised_model)
    long_output = "\n".join(f"line {i}: PASSED tests/test_ops.py::test_{i}" for i in range(30))
    events = [
        ev.ToolCallStarted("c1", "run_tests", {"path": "tests/", "args": ["-q"]}),
        ev.ToolCallFinished("c1", "run_tests", True, long_output, True, 1.25, "ok"),
        ev.ToolCallStarted("c2", "execute_python", {"code": "import sys\nprint(sys.version_info[:2])"}),
        ev.ToolCallFinished("c2", "execute_python", False, '{"ok":false,"error":"exited with status 1"}', False, 0.08,
                            "error"),
    ]

    async def run_before(pilot):
        await _started(pilot)
        for event in events:  # through the handler every agent event takes
            await app.handle_agent_event(AgentEventPosted(event))
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
