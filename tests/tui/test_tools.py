"""Tool calls through the TUI: approval, the real Docker sandbox, rejecting, writes with a diff, /undo."""

from __future__ import annotations

import pytest

from assistant.tui.screens.approval import ApprovalScreen
from assistant.tui.widgets.tool_card import ToolCard
from tests.memorised_model import FIX, FIX_CONTENT, GREET_BEFORE, RUN, RUN_ANSWER, RUN_CODE
from tests.tui.conftest import make_app, run, send, start, wait_for


async def _approval(pilot) -> ApprovalScreen:
    app = pilot.app
    await wait_for(pilot, lambda: isinstance(app.screen, ApprovalScreen), what="the approval prompt")
    return app.screen


@pytest.mark.docker
def test_allow_once_runs_the_call_in_docker_and_shows_the_result(docker_project, memorised_model):
    from assistant.settings import load_settings

    async def scenario():
        app = make_app(docker_project, memorised_model)
        bells, notes = [], []
        app.bell = lambda: bells.append(1)
        notify = app.notify
        app.notify = lambda message, **kw: (notes.append((kw.get("title"), message)), notify(message, **kw))[1]
        async with app.run_test(size=(120, 40)) as pilot:
            await start(pilot)
            assert app.chat.status.sandbox == "sandbox: docker (container)"
            await send(pilot, RUN)
            screen = await _approval(pilot)
            assert screen.request.tool == "execute_python" and screen.request.arguments == {"code": RUN_CODE}
            assert screen.focused.id == "once"  # Allow once is the default choice
            assert bells and any(title == "Approval needed" and "execute_python" in text for title, text in notes)
            card = app.chat.transcript.tool_card(screen.request.call_id)
            assert card.status == "waiting"
            await pilot.press("enter")
            await wait_for(pilot, lambda: app.turns_finished and not app.generating, what="the turn")
            assert card.status == "ok" and '"stdout":"42\\n"' in card.output and card.duration_s > 0
            assert card.border_title == "✓ execute_python" and "ok ·" in card.border_subtitle
            assert app.turns_finished[-1].stop_reason == "answer"
            assert app.turns_finished[-1].text == RUN_ANSWER
            assert app.chat.status.sandbox == "sandbox: docker (container)"

    run(scenario())
    assert "execute_python" not in load_settings(docker_project)["approvals"]  # once: no rule saved


@pytest.mark.docker
def test_allow_always_saves_a_rule_the_user_can_read(docker_project, memorised_model):
    from assistant.settings import load_settings

    async def scenario():
        app = make_app(docker_project, memorised_model)
        async with app.run_test(size=(120, 40)) as pilot:
            await start(pilot)
            await send(pilot, RUN)
            await _approval(pilot)
            await pilot.press("a")
            await wait_for(pilot, lambda: app.turns_finished and not app.generating, what="the turn")
            assert app.turns_finished[-1].text == RUN_ANSWER

    run(scenario())
    assert load_settings(docker_project)["approvals"]["execute_python"] == "allow"


@pytest.mark.docker
def test_reject_stops_the_call(docker_project, memorised_model):
    async def scenario():
        app = make_app(docker_project, memorised_model)
        async with app.run_test(size=(120, 40)) as pilot:
            await start(pilot)
            await send(pilot, RUN)
            screen = await _approval(pilot)
            await pilot.press("n")  # reject: an instruction may follow; Enter sends without one
            assert screen.has_class("-rejecting")
            await pilot.press("enter")
            await wait_for(pilot, lambda: app.turns_finished and not app.generating, what="the turn")
            finished = app.turns_finished[-1]
            assert finished.stop_reason == "rejected"
            [card] = app.chat.transcript.query(ToolCard)
            assert card.status == "rejected" and "rejected" in card.output
            assert app.controller.session.ctx.sandbox is None  # nothing ever ran

    run(scenario())


@pytest.mark.docker
def test_a_write_shows_its_diff_and_undo_restores_the_file(docker_project, memorised_model):
    greet = docker_project / "greet.py"

    async def scenario():
        app = make_app(docker_project, memorised_model)
        async with app.run_test(size=(120, 40)) as pilot:
            await start(pilot)
            await send(pilot, FIX)
            screen = await _approval(pilot)
            assert screen.request.tool == "write_file"
            diff = screen.request.diff
            assert "-print('helo wrld')" in diff and "+print('hello, world')" in diff
            assert screen.query_one("#approval-diff")  # shown before anything is written
            assert greet.read_text() == GREET_BEFORE
            await pilot.press("enter")
            await wait_for(pilot, lambda: app.turns_finished and not app.generating, what="the turn")
            assert greet.read_text() == FIX_CONTENT
            assert app.turns_finished[-1].changed_files == ["greet.py"]
            await send(pilot, "/undo")
            await wait_for(pilot, lambda: greet.read_text() == GREET_BEFORE, what="the undo")
            await wait_for(pilot, lambda: any("Undone: restored greet.py" in getattr(n, "text", "")
                                              for n in app.chat.transcript.children), what="the undo note")

    run(scenario())


def test_without_a_sandbox_each_run_asks_again_before_it_runs_on_the_host(project, memorised_model):
    """No engine and no bubblewrap (backend "none"): the call's approval, then a second, explicit one."""

    async def scenario():
        app = make_app(project, memorised_model)
        async with app.run_test(size=(120, 40)) as pilot:
            await start(pilot)
            assert app.chat.status.sandbox == "NO SANDBOX"
            await send(pilot, RUN)
            first = await _approval(pilot)
            assert first.request.tool == "execute_python"
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, ApprovalScreen) and app.screen is not first,
                           what="the no-sandbox confirmation")
            second = app.screen
            assert "WITHOUT a sandbox" in second.request.tool and second.request.arguments == {"code": RUN_CODE}
            await pilot.press("enter")
            await wait_for(pilot, lambda: app.turns_finished and not app.generating, what="the turn")
            [card] = app.chat.transcript.query(ToolCard)
            assert card.status == "ok" and '"stdout":"42\\n"' in card.output

    run(scenario())
